using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>Mona (CVPR 2025) on the ViT: the module's formula with the class token split off the patch grid, its
/// placement after the attention and MLP residuals, count, training, errors. Mona does not start as the base model
/// (its up-projection is trunc-normal, not zero).</summary>
public class MonaTests
{
    /// <summary>The authors' Mona on [B, 1 + H·W, D] written out: LN(x)·γ + x·γₓ → project1 → (patches as the grid,
    /// the class token as a 1×1 map) q = p + mean(DW3, DW5, DW7)(p), q + Conv1×1(q) → GELU → project2, plus x.</summary>
    static Tensor Expected(Dictionary<string, Tensor> w, string prefix, Tensor x, int side)
    {
        Tensor P(string n) => w[prefix + n];
        long b = x.shape[0], d = x.shape[2];
        var scaled = F.layer_norm(x, new long[] { d }, P("norm.weight"), P("norm.bias"), 1e-5) * P("gamma") + x * P("gammax");
        var down = scaled.matmul(P("project1.weight").t()) + P("project1.bias");
        long m = down.shape[2];
        Tensor Op(Tensor grid)
        {
            Tensor Dw(string conv, long pad) =>
                F.conv2d(grid, P($"adapter_conv.{conv}.weight"), P($"adapter_conv.{conv}.bias"), padding: new[] { pad, pad }, groups: m);
            var q = (Dw("conv1", 1) + Dw("conv2", 2) + Dw("conv3", 3)) / 3.0 + grid;
            return q + F.conv2d(q, P("adapter_conv.projector.weight"), P("adapter_conv.projector.bias"));
        }
        var cls = Op(down[.., ..1].reshape(b, 1, 1, m).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, 1, m);
        var patches = Op(down[.., 1..].reshape(b, side, side, m).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, -1, m);
        var mixed = F.gelu(cat(new[] { cls, patches }, 1));
        return x + mixed.matmul(P("project2.weight").t()) + P("project2.bias");
    }

    [Fact]
    public void Logits_match_mona_after_each_residual_written_out()
    {
        manual_seed(46);
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "mona", TunerRegistry.ParseSettings(new[] { "dim=8" }));
        NewMethodKit.Randomize(model, ".mona_", std: 0.1);   // γ far from 1e-6, so the LayerNorm term shows
        var w = model.named_parameters().Where(p => p.name.Contains(".mona_")).ToDictionary(p => p.name, p => p.parameter.detach());
        int side = plain.Config.GridSize;

        plain.eval();
        Tensor expected;
        using (no_grad())
        {
            var h = plain.ForwardFeatures(x, out var layout, 0, 0, finalNorm: false);
            for (int i = 0; i < plain.Config.Depth; i++)
            {
                var block = plain.blocks[i];
                h = h + block.attn.forward(block.norm1.forward(h));
                h = Expected(w, $"blocks.{i}.mona_attn.", h, side);
                h = h + block.mlp.forward(block.norm2.forward(h));
                h = Expected(w, $"blocks.{i}.mona_mlp.", h, side);
            }
            expected = plain.ForwardHead(plain.norm.forward(h), layout);
        }
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, x), atol: 1e-4, rtol: 1e-4, what: "mona");
    }

    [Fact]
    public void Initialises_as_the_authors_code_and_so_does_not_start_as_the_base_model()
    {
        manual_seed(47);
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "mona");
        var p = model.named_parameters().Where(n => n.name.StartsWith("blocks.0.mona_attn.")).ToDictionary(n => n.name[19..], n => n.parameter.detach());
        Assert.True(p["gamma"].eq(1e-6f).all().item<bool>());
        Assert.True(p["gammax"].eq(1f).all().item<bool>());
        Assert.InRange(p["project2.weight"].std().item<float>(), 0.015, 0.025);
        Assert.Equal(0f, p["project2.bias"].abs().max().item<float>());
        var difference = (TunerTestKit.EvalLogits(plain, x) - TunerTestKit.EvalLogits(model, x)).abs().max().item<float>();
        Assert.True(difference > 1e-4, $"mona changed the logits by only {difference}");
    }

    [Fact]
    public void Vit_b16_count_is_2684928_for_24_modules_of_width_64()
    {
        Assert.Equal(2_684_928L, NewMethodKit.VitBCount("mona", "dim=64"));
        const long D = 768;
        foreach (long m in new[] { 8L, 32L }) Assert.Equal(24 * (2 * D * m + 5 * D + m * m + 88 * m), NewMethodKit.VitBCount("mona", $"dim={m}"));
    }

    [Fact]
    public void Trains_alone() => NewMethodKit.AssertTrains("mona");

    [Theory]
    [InlineData("dim=0", "'dim' must be >= 1, got 0")]
    [InlineData("dim=-3", "'dim' must be >= 1, got -3")]
    [InlineData("dropout=-0.1", "'dropout' must be in [0, 0.99], got -0.1")]
    public void Bad_hyperparameters_are_one_line_naming_them(string set, string expected)
    {
        var e = NewMethodKit.BadSetting("mona", set);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
