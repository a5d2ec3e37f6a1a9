using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Interop;

/// <summary>
/// Tensor–number operations whose <c>Scalar</c> lives until the native call returns. TorchSharp 0.107 turns a number
/// argument (<c>x.div(255f)</c>) into a <c>Scalar</c> that nothing references once the call has read its handle, and
/// whose finalizer frees the native at::Scalar. A collection another thread starts during the call can run that
/// finalizer while libtorch still reads the value: "Unknown scalar type", or a failed <c>Scalar::toDouble</c> check.
/// Three threads computing with these beside a fourth that collects (KeptScalarTests) raised such errors in 4 of 5
/// runs of 3 s with implicit scalars, in none with these. Code that runs beside other threads (pool threads filling a cache, a loader preparing the
/// next batch while the step trains, a step beside a batch renderer) passes its numbers through here; the result is
/// the implicit call's, bit for bit.
/// </summary>
public static class KeptScalar
{
    public static Tensor Div(Tensor x, float value)
    {
        using var s = value.ToScalar();
        return x.div(s);
    }

    public static Tensor Div_(Tensor x, float value)
    {
        using var s = value.ToScalar();
        return x.div_(s);
    }

    public static Tensor Mul_(Tensor x, float value)
    {
        using var s = value.ToScalar();
        return x.mul_(s);
    }

    public static Tensor Clamp_(Tensor x, double min, double max)
    {
        using var low = min.ToScalar();
        using var high = max.ToScalar();
        return x.clamp_(low, high);
    }
}
