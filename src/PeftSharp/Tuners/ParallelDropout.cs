using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners;

/// <summary>
/// Inverted dropout (zero with probability p, else scale by 1/(1−p)) for the tuners' activation-sized inputs, with a
/// vectorised mask. libtorch's CPU dropout draws its Bernoulli mask one element at a time, at about 7 ns an element:
/// LoRA's dropout on the qkv input of ViT-Tiny at batch 64 took 6 ms a block, a quarter of the block's forward. Here
/// one 64-bit seed comes from torch's generator (so manual_seed, and gradient checkpointing's replay of the random
/// state, reproduce the masks) and each element's draw is a SplitMix64 hash of (seed, index), sixteen at a time, on
/// every core for large masks.
/// Other devices and dtypes use libtorch's dropout.
/// </summary>
public sealed class ParallelDropout : nn.Module<Tensor, Tensor>
{
    readonly double p;

    public ParallelDropout(double p) : base("Dropout")
    {
        if (p < 0 || p >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        this.p = p;
    }

    public double P => p;

    /// <summary>Whether forward drops anything (training with p &gt; 0); otherwise it returns its input.</summary>
    public bool Active => training && p > 0;

    public override Tensor forward(Tensor x)
    {
        if (!Active) return x;
        if (!Interop.CpuOnly.ParallelDropoutMasks(x.device_type) || x.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || x.numel() > int.MaxValue / 4)
            return F.dropout(x, p, true);
        using var mask = Mask(x.shape, p);
        return x.dtype == ScalarType.Float32 ? x * mask : x * mask.to(x.dtype);
    }

    /// <summary>A float32 mask of <paramref name="shape"/> holding 0 with probability p and 1/(1−p) otherwise.</summary>
    public static Tensor Mask(long[] shape, double p)
    {
        var mask = empty(shape, dtype: ScalarType.Float32);
        if (mask.numel() > 0) Apply(mask, DrawSeed(), p, scaleInPlace: false);
        return mask;
    }

    /// <summary>The seed of one mask, from torch's generator.</summary>
    public static ulong DrawSeed() =>
        (ulong)randint(long.MinValue, long.MaxValue, Array.Empty<long>(), dtype: ScalarType.Int64).item<long>();

    /// <summary>Multiplies <paramref name="x"/> (contiguous float32 on the CPU) in place by the mask that
    /// <see cref="Mask"/> draws from <paramref name="seed"/>: dropout without a stored mask, whose backward multiplies
    /// the gradient by the same mask, redrawn from the seed. One pass instead of writing a mask, reading it back, and
    /// keeping it for the backward.</summary>
    public static void MultiplyByMask_(Tensor x, ulong seed, double p)
    {
        if (x.device_type != DeviceType.CPU || x.dtype != ScalarType.Float32 || !x.is_contiguous())
            throw new ArgumentException($"expected a contiguous float32 CPU tensor, got a{(x.is_contiguous() ? "" : " strided")} {x.dtype} tensor on {x.device_type}", nameof(x));
        if (x.numel() > 0) Apply(x, seed, p, scaleInPlace: true);
    }

    const long ChunkElements = 1 << 16;

    /// <summary>Masks up to this many elements are drawn on the calling thread. Inside a training step each mask
    /// follows a libtorch parallel region, and handing a small one to .NET's pool cost more than the hashing: FacT-TK's
    /// step (48 masks of 0.13–0.53 M elements each way) took 1.007–1.033× as long with the pool in three in-process
    /// A/B runs of 26 step pairs, LoRA's (12 masks of 0.8 M) 0.998–1.019×.</summary>
    const long SerialElements = 1 << 20;
    const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>Writes the mask of <paramref name="seed"/> into <paramref name="values"/>, or multiplies them by it.</summary>
    static unsafe void Apply(Tensor values, ulong seed, double p, bool scaleInPlace)
    {
        long count = values.numel();
        // Keep an element when its 32-bit draw is at or above p·2³².
        uint threshold = (uint)Math.Round(p * 4294967296.0);
        float keep = (float)(1.0 / (1.0 - p));
        fixed (byte* bytes = values.bytes)
        {
            var data = (IntPtr)bytes;
            if (count <= SerialElements)
            {
                DrawRange((float*)data, 0, count, seed, threshold, keep, scaleInPlace);
                return;
            }
            long chunks = (count + ChunkElements - 1) / ChunkElements;
            Parallel.For(0L, chunks, chunk =>
            {
                long start = chunk * ChunkElements;
                DrawRange((float*)data, start, Math.Min(count, start + ChunkElements), seed, threshold, keep, scaleInPlace);
            });
        }
    }

    /// <summary>Elements [start, end) (start even): element i takes half i mod 2 of the 64-bit hash of pair i/2, and
    /// its mask value is stored, or multiplies the stored value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot from the first call: no tier-0 vector code
    static unsafe void DrawRange(float* values, long start, long end, ulong seed, uint threshold, float keep, bool scaleInPlace)
    {
        long i = start;
        if (Vector512.IsHardwareAccelerated)
        {
            // Eight hashes at a time; as 32-bit lanes they are the low and high halves in element order.
            var lanes = Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7);
            var limit = Vector512.Create(threshold);
            var keepValues = Vector512.Create(keep);
            for (; i + 16 <= end; i += 16)
            {
                var state = Vector512.Create(seed) + (Vector512.Create((ulong)(i >> 1)) + lanes) * Gamma;
                var draws = SplitMix64(state).AsUInt32();
                var mask = Vector512.BitwiseAnd(Vector512.GreaterThanOrEqual(draws, limit).AsSingle(), keepValues);
                (scaleInPlace ? Vector512.Load(values + i) * mask : mask).Store(values + i);
            }
        }
        for (; i < end; i += 2)
        {
            ulong z = SplitMix64(seed + (ulong)(i >> 1) * Gamma);
            float low = (uint)z >= threshold ? keep : 0f, high = (uint)(z >> 32) >= threshold ? keep : 0f;
            values[i] = scaleInPlace ? values[i] * low : low;
            if (i + 1 < end) values[i + 1] = scaleInPlace ? values[i + 1] * high : high;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<ulong> SplitMix64(Vector512<ulong> z)
    {
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * 0x94D049BB133111EBUL;
        return z ^ Vector512.ShiftRightLogical(z, 31);
    }

    /// <summary>SplitMix64's output function (Steele, Lea and Flood 2014).</summary>
    static ulong SplitMix64(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
