using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>DTL (Fu et al., AAAI 2024): the side path's formula, its count, that it trains, and its errors.</summary>
public class DtlTests
{
    /// <summary>The authors' forward, written out on a plain copy of the backbone: S_j = Σ_{i≤j} x_i Aᵢᵀ Bᵢᵀ before each
    /// block, x_{j+1} = Block_j(x_j) + S_j·σ(β S_j) after the second half's blocks (here block 1 of 2).</summary>
    static Tensor Expected(VisionTransformer plain, Dictionary<string, Tensor> weights, Tensor images, double beta, Func<Tensor, Tensor>? fuse = null)
    {
        var x = plain.ForwardFeatures(images, out var layout, 0, 0, finalNorm: false);
        Tensor? sum = null;
        int depth = plain.Config.Depth;
        for (int i = 0; i < depth; i++)
        {
            var z = x.matmul(weights[$"blocks.{i}.dtl.lora_A.weight"].t()).matmul(weights[$"blocks.{i}.dtl.lora_B.weight"].t());
            sum = sum is null ? z : sum + z;
            x = plain.blocks[i].forward(x);
            if (i >= depth / 2)
            {
                var g = sum * sigmoid(beta * sum);
                x = x + (fuse is null ? g : fuse(g));
            }
        }
        return plain.ForwardHead(plain.norm.forward(x), layout);
    }

    static (Tensor Actual, Tensor Expected) Run(string[] sets, double beta, Func<Dictionary<string, Tensor>, Func<Tensor, Tensor>>? fuse = null)
    {
        manual_seed(41);
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "dtl", TunerRegistry.ParseSettings(sets));
        NewMethodKit.Randomize(model, "dtl.lora_B", std: 0.05);
        var weights = model.named_parameters().Where(p => p.name.Contains(".dtl.")).ToDictionary(p => p.name, p => p.parameter.detach());
        plain.eval();
        using var _ = no_grad();
        return (TunerTestKit.EvalLogits(model, x), Expected(plain, weights, x, beta, fuse?.Invoke(weights)));
    }

    [Fact]
    public void Logits_match_the_authors_side_path_written_out()
    {
        var (actual, expected) = Run(new[] { "rank=3" }, 100);
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-4, what: "dtl");
    }

    [Fact]
    public void Beta_is_the_swish_sharpness()
    {
        var (actual, expected) = Run(new[] { "beta=2" }, 2);
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-4, what: "dtl beta=2");
    }

    [Fact]
    public void Dtl_plus_convolves_the_patch_grid_with_one_depthwise_kernel_and_the_class_token_skips_it()
    {
        var (actual, expected) = Run(new[] { "fusion=3" }, 100, weights => g =>
        {
            var kernel = weights["blocks.0.dtl.fusion.weight"];   // [D, 1, 3, 3]
            long b = g.shape[0], d = g.shape[2], side = (long)Math.Sqrt(g.shape[1] - 1);
            var grid = g[.., 1..].reshape(b, side, side, d).permute(0, 3, 1, 2);
            var fused = F.conv2d(grid, kernel, padding: new long[] { 1, 1 }, groups: d).permute(0, 2, 3, 1).reshape(b, -1, d);
            return cat(new[] { g[.., ..1], fused }, 1);
        });
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-4, what: "dtl+");
    }

    [Fact]
    public void Vit_b16_count_is_36864_at_rank_2()
    {
        Assert.Equal(36_864L, NewMethodKit.VitBCount("dtl", "rank=2"));
        Assert.Equal(12L * 2 * 4 * 768, NewMethodKit.VitBCount("dtl", "rank=4"));
        Assert.Equal(36_864L + 768 * 9, NewMethodKit.VitBCount("dtl", "rank=2", "fusion=3"));
    }

    [Fact]
    public void Trains_alone() => NewMethodKit.AssertTrains("dtl");

    [Theory]
    [InlineData("rank=0", "'rank' must be >= 1, got 0")]
    [InlineData("beta=-1", "'beta' must be >= 0, got -1")]
    [InlineData("fusion=-3", "'fusion' must be >= 0, got -3")]
    [InlineData("fusion=2", "'fusion' must be odd")]
    public void Bad_hyperparameters_are_one_line_naming_them(string set, string expected)
    {
        var e = NewMethodKit.BadSetting("dtl", set);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Refuses_gradient_checkpointing_with_one_line()
    {
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "dtl");
        model.GradCheckpointing = true;
        model.train();
        var (x, _) = TunerTestKit.Batch(size: 2);
        var e = Assert.Throws<PeftSharpException>(() => model.forward(x));
        Assert.Contains("gradient checkpointing", e.Message);
    }
}
