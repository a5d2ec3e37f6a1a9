using PeftSharp.Models;
using PeftSharp.Tuners.Methods;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

/// <summary>ConvPass's non-patch tokens (class token, prompts) are 1×1 maps through the 3×3 conv. libtorch's conv2d
/// backward for such a map sometimes returns garbage as the input gradient, so ConvPass computes it as the linear map
/// it is: these tests pin both the value (equal to the conv) and that its gradients stay finite.</summary>
public class ConvPassTests
{
    static (ConvBypass Bypass, TokenLayout Layout, Tensor X) Setup()
    {
        manual_seed(5);
        var bypass = new ConvBypass(dim: 16, rank: 8, scale: 1, dropoutRate: 0, xavier: true);
        using (no_grad()) bypass.adapter_up.weight!.normal_();   // a non-zero Up, so gradients reach Down and the conv
        bypass.eval();
        return (bypass, new TokenLayout(prefixTokens: 1, gridHeight: 4, gridWidth: 4), randn(6, 17, 16));
    }

    [Fact]
    public void The_class_token_goes_through_the_conv_as_a_one_by_one_map()
    {
        var (bypass, layout, x) = Setup();
        var output = bypass.Apply(InsertionPoint.AttnParallelNormed, x, layout);

        using var _ = no_grad();
        var down = bypass.adapter_down.forward(x);
        down = down * sigmoid(1.702 * down);
        var cls = bypass.adapter_conv.forward(down[.., ..1].reshape(6, 8, 1, 1)).reshape(6, 1, 8);
        var mixed = cls * sigmoid(1.702 * cls);
        TensorAssert.Close(bypass.adapter_up.forward(mixed), output[.., ..1], atol: 1e-6, rtol: 1e-5, what: "class token");
    }

    [Fact]
    public void Gradients_stay_finite_over_many_backward_passes()
    {
        var (bypass, layout, x) = Setup();
        for (int i = 0; i < 100; i++)
        {
            using var scope = NewDisposeScope();
            var input = x.detach().requires_grad_(true);
            bypass.zero_grad();
            bypass.Apply(InsertionPoint.AttnParallelNormed, input, layout).square().sum().backward();
            Assert.True(isfinite(input.grad!).all().item<bool>(), $"pass {i}: non-finite input gradient");
            foreach (var (name, p) in bypass.named_parameters())
                Assert.True(isfinite(p.grad!).all().item<bool>(), $"pass {i}: non-finite gradient of {name}");
        }
    }
}
