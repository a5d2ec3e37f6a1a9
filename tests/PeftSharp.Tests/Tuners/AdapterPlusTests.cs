using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>Adapter+ (Steitz &amp; Roth, CVPR 2024): the post-block adapter's formula and placement, its init, count,
/// training, errors.</summary>
public class AdapterPlusTests
{
    [Fact]
    public void Logits_match_the_post_block_adapter_written_out()
    {
        manual_seed(44);
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "adapter-plus", TunerRegistry.ParseSettings(new[] { "rank=4" }));
        NewMethodKit.Randomize(model, "adapter_plus.");   // biases and the channel scale too, so every term shows
        var w = model.named_parameters().Where(p => p.name.Contains("adapter_plus")).ToDictionary(p => p.name, p => p.parameter.detach());

        plain.eval();
        Tensor expected;
        using (no_grad())
        {
            // x ← x + s ⊙ (W_up GELU(W_down x + b_down) + b_up) after each whole block (drop-path is off in eval).
            var h = plain.ForwardFeatures(x, out var layout, 0, 0, finalNorm: false);
            for (int i = 0; i < plain.Config.Depth; i++)
            {
                h = plain.blocks[i].forward(h);
                string a = $"blocks.{i}.adapter_plus.";
                var hidden = F.gelu(h.matmul(w[a + "down.weight"].t()) + w[a + "down.bias"]);
                h = h + w[a + "scaling"] * (hidden.matmul(w[a + "up.weight"].t()) + w[a + "up.bias"]);
            }
            expected = plain.ForwardHead(plain.norm.forward(h), layout);
        }
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-4, what: "adapter+");
    }

    [Fact]
    public void Initialises_as_the_authors_houlsby_init_with_unit_channel_scale()
    {
        manual_seed(45);
        using var model = new VisionTransformer(VitPresets.Get("vit_base_patch16_224") with { NumClasses = 10, Depth = 2 });
        PeftModel.Create(model, "adapter-plus");
        var p = model.named_parameters().Where(n => n.name.Contains("adapter_plus")).ToDictionary(n => n.name, n => n.parameter.detach());
        foreach (var name in new[] { "blocks.0.adapter_plus.down.weight", "blocks.0.adapter_plus.up.weight" })
        {
            Assert.True(p[name].abs().max().item<float>() <= 0.02f, $"{name} exceeds ±0.02");
            Assert.InRange(p[name].std().item<float>(), 0.0075, 0.0095);   // N(0, 0.01²) cut at 2σ has std ≈ 0.0088
        }
        Assert.Equal(0f, p["blocks.0.adapter_plus.up.bias"].abs().max().item<float>());
        Assert.Equal(0f, p["blocks.0.adapter_plus.down.bias"].abs().max().item<float>());
        Assert.True(p["blocks.0.adapter_plus.scaling"].eq(1).all().item<bool>());
    }

    [Fact]
    public void Vit_b16_count_is_165984_at_rank_8()
    {
        Assert.Equal(165_984L, NewMethodKit.VitBCount("adapter-plus", "rank=8"));
        foreach (int r in new[] { 1, 32 }) Assert.Equal(12L * (1536 * r + r + 1536), NewMethodKit.VitBCount("adapter-plus", $"rank={r}"));
    }

    [Fact]
    public void Trains_alone() => NewMethodKit.AssertTrains("adapter-plus");

    [Theory]
    [InlineData("rank=0", "'rank' must be >= 1, got 0")]
    [InlineData("rank=-4", "'rank' must be >= 1, got -4")]
    [InlineData("drop_path=-0.1", "'drop_path' must be in [0, 0.99], got -0.1")]
    public void Bad_hyperparameters_are_one_line_naming_them(string set, string expected)
    {
        var e = NewMethodKit.BadSetting("adapter-plus", set);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
