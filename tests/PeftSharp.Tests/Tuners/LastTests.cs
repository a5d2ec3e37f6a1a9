using PeftSharp.Models;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>LAST (Tang et al. 2024): the side network u_i = F_i(u_{i−1} + z_i) and the corrected output
/// u_m − Σ z_i written out by hand, no gradient into the backbone, the count, training, errors.</summary>
public class LastTests
{
    static Tensor P(nn.Module model, string name) => model.named_parameters().Single(p => p.name == name).parameter.detach();

    /// <summary>One LSA layer by hand: x + W_o softmax(q kᵀ/√(r/h)) v with q, k, v = W LN(x) + b, head by head.</summary>
    static Tensor Lsa(nn.Module model, string prefix, Tensor x, int heads)
    {
        var h = F.layer_norm(x, new long[] { x.shape[2] }, P(model, $"{prefix}.norm.weight"), P(model, $"{prefix}.norm.bias"), 1e-6);
        Tensor Proj(string n) => h.matmul(P(model, $"{prefix}.{n}.weight").t()) + P(model, $"{prefix}.{n}.bias");
        var (q, k, v) = (Proj("q"), Proj("k"), Proj("v"));
        long r = q.shape[2], d = r / heads;
        var outs = new List<Tensor>();
        for (int i = 0; i < heads; i++)
        {
            var (qi, ki, vi) = (q[.., .., (int)(i * d)..(int)((i + 1) * d)], k[.., .., (int)(i * d)..(int)((i + 1) * d)], v[.., .., (int)(i * d)..(int)((i + 1) * d)]);
            outs.Add((qi.matmul(ki.transpose(1, 2)) / Math.Sqrt(d)).softmax(-1).matmul(vi));
        }
        return x + cat(outs.ToArray(), -1).matmul(P(model, $"{prefix}.o.weight").t()) + P(model, $"{prefix}.o.bias");
    }

    [Fact]
    public void Logits_follow_the_side_network_and_the_bias_correction()
    {
        manual_seed(9);
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "last", TunerRegistry.ParseSettings(new[] { "rank=6", "heads=2" }));
        NewMethodKit.Randomize(model, ".last.", std: 0.2);
        var (images, _) = TunerTestKit.Batch();
        // By hand, on the plain backbone: z0 the embedded tokens, z1 and z2 the blocks' outputs; u1 = F1(z0 + z1),
        // u2 = F2(u1 + z2); the head reads the final norm of u2 − z0 − z1 at the class token.
        plain.eval();
        Tensor expected;
        using (no_grad())
        {
            var z0 = plain.ForwardFeatures(images, out var layout, 0, 0, finalNorm: false);
            var z1 = plain.blocks[0].forward(z0);
            var z2 = plain.blocks[1].forward(z1);
            var u1 = Lsa(model, "blocks.0.last.layers.0", z0 + z1, 2);
            var u2 = Lsa(model, "blocks.1.last.layers.0", u1 + z2, 2);
            expected = plain.ForwardHead(plain.norm.forward(u2 - z0 - z1), layout);
        }
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, images), atol: 1e-5, rtol: 1e-4, what: "last logits");
    }

    [Fact]
    public void A_gap_of_two_runs_one_side_block_after_both_blocks()
    {
        manual_seed(10);
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "last", TunerRegistry.ParseSettings(new[] { "rank=4", "gap=2", "layers=2" }));
        Assert.Equal(2L * (4 * 64 * 4 + 3 * 4 + 3 * 64), peft.CountTrainable());   // one side block of two layers
        NewMethodKit.Randomize(model, ".last.", std: 0.2);
        var (images, _) = TunerTestKit.Batch();
        plain.eval();
        Tensor expected;
        using (no_grad())
        {
            var z0 = plain.ForwardFeatures(images, out var layout, 0, 0, finalNorm: false);
            var z1 = plain.blocks[1].forward(plain.blocks[0].forward(z0));
            var u = Lsa(model, "blocks.1.last.layers.1", Lsa(model, "blocks.1.last.layers.0", z0 + z1, 1), 1);
            expected = plain.ForwardHead(plain.norm.forward(u - z0), layout);
        }
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, images), atol: 1e-5, rtol: 1e-4, what: "gap 2");
    }

    [Fact]
    public void No_gradient_reaches_the_backbone_and_it_starts_as_the_base()
    {
        manual_seed(11);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "last");
        // Even with every backbone weight differentiable, the side network reads its outputs without a gradient.
        foreach (var p in model.parameters()) p.requires_grad = true;
        var (x, y) = TunerTestKit.Batch();
        model.train();
        F.cross_entropy(model.forward(x), y).backward();
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.StartsWith("blocks.") && !p.name.Contains(".last.")))
            Assert.True(p.grad is null || p.grad.abs().max().item<float>() == 0, $"{name} got a gradient");
        Assert.Contains(model.named_parameters(), p => p.name.Contains(".last.") && p.parameter.grad is not null);
        using var plain = TunerTestKit.Backbone();
        TensorAssert.Close(TunerTestKit.EvalLogits(plain, x), TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-5, what: "last at init");
    }

    [Fact]
    public void Vit_b16_count_is_618048_at_rank_16() =>
        Assert.Equal(12L * (4 * 768 * 16 + 3 * 16 + 3 * 768), NewMethodKit.VitBCount("last"));

    [Fact]
    public void Trains_alone_loss_falls_clearly() => NewMethodKit.AssertTrains("last");

    [Theory]
    [InlineData("heads=5", "'heads' = 5 does not divide 'rank' = 16", "rank=16")]
    [InlineData("gap=3", "'gap' = 3 does not divide the 2 blocks", null)]
    [InlineData("rank=0", "'rank' must be >= 1, got 0", null)]
    public void Bad_hyperparameters_are_one_line(string set, string expected, string? other)
    {
        using var model = TunerTestKit.Backbone();
        var sets = other is null ? new[] { set } : new[] { set, other };
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(model, "last", TunerRegistry.ParseSettings(sets)));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Refuses_gradient_checkpointing_with_one_line() => NewMethodKit.RefusesGradientCheckpointing("last");
}
