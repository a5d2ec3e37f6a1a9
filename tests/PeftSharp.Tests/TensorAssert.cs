using static TorchSharp.torch;

namespace PeftSharp.Tests;

public static class TensorAssert
{
    /// <summary>|a − b| ≤ atol + rtol·|b| elementwise, with the worst element in the message.</summary>
    public static void Close(Tensor expected, Tensor actual, double atol = 1e-5, double rtol = 1e-5, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        var e = expected.to(float64).cpu();
        var a = actual.detach().to(float64).cpu();
        var excess = ((a - e).abs() - (atol + rtol * e.abs())).max().item<double>();
        var maxAbs = (a - e).abs().max().item<double>();
        Assert.True(excess <= 0, $"{what}: max |diff| {maxAbs:g4} exceeds atol {atol:g2} + rtol {rtol:g2}·|expected|");
    }

    /// <summary>‖a − b‖ / ‖b‖ ≤ rtol (for gradients, whose small entries carry relative noise).</summary>
    public static void RelativeNorm(Tensor expected, Tensor actual, double rtol, string what = "")
    {
        var e = expected.to(float64).cpu();
        var a = actual.detach().to(float64).cpu();
        double rel = ((a - e).norm().item<double>()) / Math.Max(e.norm().item<double>(), 1e-30);
        Assert.True(rel <= rtol, $"{what}: relative error {rel:g4} > {rtol:g2}");
    }

    public static void Identical(Tensor expected, Tensor actual, string what = "") =>
        Assert.True(expected.shape.SequenceEqual(actual.shape) && expected.eq(actual).all().item<bool>(), $"{what}: tensors differ");
}
