using System.Runtime.InteropServices;

namespace PeftSharp;

/// <summary>
/// glibc heap settings for libtorch's CPU tensors. By default glibc serves blocks above its (adaptive) mmap threshold
/// with fresh mmap calls and returns freed memory to the kernel, so every training step faults in its activation and
/// gradient buffers again: a 3 MB gradient's first touch costs more than the kernel that fills it. Keeping blocks up
/// to 32 MB in the heap and not trimming it lets the allocator reuse them from step to step.
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

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int mallopt(int parameter, int value);
}
