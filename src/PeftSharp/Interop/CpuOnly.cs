using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Interop;

/// <summary>
/// The helpers written for libtorch's CPU backend and glibc's heap, and the one decision each takes from the device of
/// the tensors at hand: on any other device (CUDA, MPS, meta) each is bypassed and libtorch's own path runs, with the
/// same results. Kept in one place so that a GPU build has a single list to read and a test to run (the helpers
/// themselves were measured on the CPU only; see docs/gpu.md).
/// </summary>
public static class CpuOnly
{
    /// <summary><see cref="Tuners.ParallelDropout"/>'s vectorised SplitMix64 masks (written through a CPU data pointer,
    /// on .NET threads). Elsewhere: libtorch's dropout.</summary>
    public static bool ParallelDropoutMasks(DeviceType device) => device == DeviceType.CPU;

    /// <summary>The fused low-rank and scaling autograd nodes (<see cref="Tuners.LowRankUpdate"/>, SSF's): custom autograd
    /// functions whose placeholders are released by reflection on TorchSharp's autograd nodes
    /// (<see cref="CustomAutograd"/>) and whose dropout redraws CPU masks from a seed. Elsewhere: plain autograd on
    /// the same formula.</summary>
    public static bool FusedAutogradNodes(DeviceType device) => device == DeviceType.CPU;

    /// <summary>The generation-0 collection at the end of each step (<see cref="NativeHeap.StepScope"/>), which frees
    /// TorchSharp's finalizer-held scalars before they fragment the C heap that CPU tensors live in. A GPU's tensors
    /// live in its caching allocator: elsewhere the step scope is a plain dispose scope.</summary>
    public static bool StepGarbageCollection(DeviceType device) => device == DeviceType.CPU;

    /// <summary><see cref="NativeHeap.AllocatedBytes"/> (glibc's mallinfo2) as a measure of tensor memory: on another
    /// device it would count host memory only, so it reports nothing there.</summary>
    public static bool NativeHeapAccounting(DeviceType device) => device == DeviceType.CPU;

    /// <summary>Attention head by head on views of the qkv output, and the explicit softmax(q·kᵀ)·v in place of
    /// libtorch's fused kernel (both measured faster on the CPU only). Elsewhere: batched heads and
    /// scaled_dot_product_attention.</summary>
    public static bool CpuAttentionKernels(DeviceType device) => device == DeviceType.CPU;

    /// <summary>Every decision by name (docs/gpu.md lists them; a test checks each bypasses on CUDA and meta).</summary>
    public static IReadOnlyList<(string Helper, Func<DeviceType, bool> Applies)> All { get; } =
    [
        ("parallel dropout masks", ParallelDropoutMasks),
        ("fused autograd nodes (reflection on autograd nodes)", FusedAutogradNodes),
        ("step garbage collection (NativeHeap.StepScope)", StepGarbageCollection),
        ("native heap accounting (mallinfo2)", NativeHeapAccounting),
        ("CPU attention kernels", CpuAttentionKernels),
    ];
}
