using PeftSharp.Tuners.Methods;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

public class SsfTests
{
    /// <summary>SSF on a frozen Linear, (x Wᵀ + b)·s + t, gives autograd's output and gradients whether the fused node
    /// computes it or (with a scale too small for it) autograd does.</summary>
    [Theory]
    [InlineData(false, 10)]
    [InlineData(false, 2048)]
    [InlineData(true, 10)]
    public void Scale_and_shift_of_a_frozen_linear_match_autograd(bool tinyScale, int rows)
    {
        manual_seed(9);
        var linear = nn.Linear(8, 6);
        foreach (var p in linear.parameters()) p.requires_grad_(false);
        using var ssf = new ScaleShift(linear, 6, -1);
        if (tinyScale)
            using (no_grad()) ssf.ssf_scale[2] = 0.001f;
        var x = randn(2, rows / 2, 8);
        var g = randn(2, rows / 2, 6);
        Assert.Equal(!tinyScale, ScaledLinear.Applies(linear, x, ssf.ssf_scale));

        var (xe, scale, shift) = (x.clone().requires_grad_(true), ssf.ssf_scale.detach().clone().requires_grad_(true),
                                  ssf.ssf_shift.detach().clone().requires_grad_(true));
        var expected = F.linear(xe, linear.weight!, linear.bias) * scale + shift;
        (expected * g).sum().backward();

        var xa = x.clone().requires_grad_(true);
        var actual = ssf.forward(xa);
        (actual * g).sum().backward();

        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-5, what: "output");
        TensorAssert.Close(xe.grad!, xa.grad!, atol: 1e-5, rtol: 1e-5, what: "∂x");
        TensorAssert.Close(scale.grad!, ssf.ssf_scale.grad!, atol: 1e-4, rtol: 1e-5, what: "∂scale");
        TensorAssert.Close(shift.grad!, ssf.ssf_shift.grad!, atol: 1e-4, rtol: 1e-5, what: "∂shift");
    }
}
