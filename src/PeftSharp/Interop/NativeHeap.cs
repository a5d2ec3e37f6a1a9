using TorchSharp;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace PeftSharp.Interop;

/// <summary>
/// The C heap libtorch's CPU tensors live in: its settings, the garbage each step leaves in it, and how much of it is
/// allocated. By default glibc serves blocks above its (adaptive) mmap threshold with fresh mmap calls and returns
/// freed memory to the kernel, so every training step faults in its activation and gradient buffers again: a 3 MB
/// gradient's first touch costs more than the kernel that fills it. Keeping blocks up to 32 MB in the heap and not
/// trimming it lets the allocator reuse them from step to step (<see cref="KeepFreedBuffers"/>), as long as nothing
/// small and long-lived lands in the holes (<see cref="StepScope"/>).
/// </summary>
public static class NativeHeap
{
    const int TrimThreshold = -1, MmapThreshold = -3;   // mallopt parameters (malloc.h)

    static bool applied;

    /// <summary>Applies the settings to this process (once; a no-op where glibc is absent). Returns whether they apply.</summary>
    public static bool KeepFreedBuffers()
    {
        if (applied) return true;
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            // 32 MB is glibc's largest mmap threshold on 64-bit; larger blocks still come from mmap.
            applied = mallopt(MmapThreshold, 32 << 20) == 1 & mallopt(TrimThreshold, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            applied = false;   // not glibc (musl): keep its defaults
        }
        return applied;
    }

    /// <summary>The dispose scope of one step of a loop over batches (a training step, an evaluation batch) that, as it
    /// ends, also frees what the step's dead .NET wrappers still hold of the native heap
    /// (<see cref="CollectStepGarbage"/>). Use it as the step's outermost scope. On a device other than the CPU it is a
    /// plain dispose scope (<see cref="CpuOnly.StepGarbageCollection"/>).</summary>
    public static IDisposable StepScope(DeviceType device = DeviceType.CPU) =>
        CpuOnly.StepGarbageCollection(device) ? new StepDisposeScope(NewDisposeScope()) : NewDisposeScope();

    /// <summary>Frees the native memory that unreachable .NET objects hold until they are finalized. TorchSharp wraps
    /// each scalar argument of an operation (an alpha, a scale, a learning rate: thousands in a training step, the
    /// optimizer's included) in a native at::Scalar that only the finalizer frees, and a dispose scope does not own
    /// them. Left for the GC, these small blocks sit between the step's freed activation buffers, the buffers of the
    /// next step no longer fit the holes, and the heap grows step after step: `train` of FacT-TK on ViT-Tiny at
    /// batch 64 reached a peak RSS of 4.9 GB in 96 steps (LoRA, DoRA and full fine-tuning grew more slowly). A
    /// generation-0 collection after each step frees them while the holes are still free: 0.5–2 ms, against 190 ms for
    /// a ViT-Tiny inference batch of 64 and 460 ms for a LoRA training step. Inference grows the heap the same way
    /// (200 FacT-TK batches: 744 MB of heap without, 310 MB with).</summary>
    public static void CollectStepGarbage()
    {
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        GC.WaitForPendingFinalizers();
    }

    /// <summary>Bytes allocated from the C heap (in use in glibc's arenas and its mmapped blocks): what libtorch's CPU
    /// tensors hold, without the freed blocks the heap keeps. Null where glibc's mallinfo2 (2.33+) is absent, and for
    /// tensors on another device than the CPU (<see cref="CpuOnly.NativeHeapAccounting"/>).</summary>
    public static long? AllocatedBytes(DeviceType device = DeviceType.CPU)
    {
        if (!OperatingSystem.IsLinux() || !CpuOnly.NativeHeapAccounting(device)) return null;
        try
        {
            var info = mallinfo2();
            return (long)(info.uordblks + info.hblkhd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    sealed class StepDisposeScope(IDisposable scope) : IDisposable
    {
        bool disposed;

        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            scope.Dispose();
            CollectStepGarbage();
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int mallopt(int parameter, int value);

    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallInfo2 mallinfo2();
}
