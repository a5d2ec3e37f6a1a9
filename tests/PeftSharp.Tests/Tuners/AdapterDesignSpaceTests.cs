using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>The unifying study's adapter design space as method 'adapter': each position and LayerNorm side against
/// the study's block written out, the inits, counts, training and errors.</summary>
public class AdapterDesignSpaceTests
{
    /// <summary>A(v) = s·(W_up ReLU(W_down v + b_down) + b_up) of one block's adapter on one branch.</summary>
    static Tensor Adapter(Dictionary<string, Tensor> w, string prefix, Tensor v, double scale)
    {
        var hidden = F.relu(v.matmul(w[prefix + "down.weight"].t()) + w[prefix + "down.bias"]);
        var up = hidden.matmul(w[prefix + "up.weight"].t()) + w[prefix + "up.bias"];
        return w.TryGetValue(prefix + "scaler", out var s) ? up * s : up * scale;
    }

    /// <summary>One branch of the study's BlockPETL with its adapter (drop-path and LayerScale are identities here).</summary>
    static Tensor Branch(Tensor x, Func<Tensor, Tensor> norm, Func<Tensor, Tensor> sublayer, Func<Tensor, Tensor> adapter, string position, string ln)
    {
        var normed = norm(x);
        return position switch
        {
            "after" => x + sublayer(normed) + adapter(sublayer(normed)),
            "before" => x + sublayer(normed + adapter(normed)),
            _ => x + sublayer(normed) + adapter(ln == "before" ? x : normed),
        };
    }

    [Theory]
    [InlineData("after", "before", false)]
    [InlineData("before", "before", false)]
    [InlineData("parallel", "before", true)]
    [InlineData("parallel", "after", false)]
    public void Logits_match_the_studys_block_written_out(string position, string ln, bool learnable)
    {
        manual_seed(48);
        const double scale = 0.5;
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "adapter", TunerRegistry.ParseSettings(new[]
        {
            "rank=4", $"position={position}", $"ln={ln}", $"scale={scale}", $"learnable_scale={learnable}",
        }));
        NewMethodKit.Randomize(model, ".adapter_", std: 0.1);
        var w = model.named_parameters().Where(p => p.name.Contains(".adapter_")).ToDictionary(p => p.name, p => p.parameter.detach());
        if (learnable) Assert.Contains("blocks.0.adapter_mlp.scaler", w.Keys);

        plain.eval();
        Tensor expected;
        using (no_grad())
        {
            var h = plain.ForwardFeatures(x, out var layout, 0, 0, finalNorm: false);
            for (int i = 0; i < plain.Config.Depth; i++)
            {
                var block = plain.blocks[i];
                string a = $"blocks.{i}.adapter_attn.", m = $"blocks.{i}.adapter_mlp.";
                h = Branch(h, block.norm1.forward, block.attn.forward, v => Adapter(w, a, v, scale), position, ln);
                h = Branch(h, block.norm2.forward, block.mlp.forward, v => Adapter(w, m, v, scale), position, ln);
            }
            expected = plain.ForwardHead(plain.norm.forward(h), layout);
        }
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-4, what: $"adapter {position}/{ln}");
    }

    [Theory]
    [InlineData("adapter-houlsby", "", "adapter_attn:adapter_attn,adapter_mlp:adapter_mlp")]
    [InlineData("adapter-pfeiffer", "branches=mlp;init=lora-xavier", "adapter_mlp:adapter_mlp")]
    [InlineData("adaptformer", "position=parallel;branches=mlp;init=lora;scale=0.1;rank=16", "adaptformer:adapter_mlp")]
    public void Its_options_reproduce_the_named_adapters_from_the_same_weights(string named, string sets, string renames)
    {
        manual_seed(50);
        var (x, _) = TunerTestKit.Batch();
        using var reference = TunerTestKit.Backbone();
        PeftModel.Create(reference, named);
        NewMethodKit.Randomize(reference, "adapt", std: 0.1);
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "adapter", TunerRegistry.ParseSettings(sets.Split(';', StringSplitOptions.RemoveEmptyEntries)));
        var own = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int copied = 0;
        using (no_grad())
            foreach (var (name, p) in reference.named_parameters())
                foreach (var pair in renames.Split(','))
                {
                    var (from, to) = (pair.Split(':')[0], pair.Split(':')[1]);
                    if (!name.Contains($".{from}.")) continue;
                    own[name.Replace($".{from}.", $".{to}.")].copy_(p);
                    copied++;
                }
        Assert.Equal(model.named_parameters().Count(p => p.name.Contains(".adapter_")), copied);
        TensorAssert.Close(TunerTestKit.EvalLogits(reference, x), TunerTestKit.EvalLogits(model, x), atol: 1e-6, rtol: 1e-5, what: named);
    }

    [Theory]
    [InlineData("lora", "after")]
    [InlineData("lora-xavier", "before")]
    [InlineData("lora", "parallel")]
    public void Zero_up_inits_start_as_the_base_model(string init, string position)
    {
        manual_seed(49);
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "adapter", TunerRegistry.ParseSettings(new[] { $"init={init}", $"position={position}" }));
        TensorAssert.Close(TunerTestKit.EvalLogits(plain, x), TunerTestKit.EvalLogits(model, x), atol: 1e-6, rtol: 1e-6, what: init);
    }

    [Fact]
    public void The_studys_zero_init_zeroes_the_down_weight_and_the_up_bias_only()
    {
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "adapter", TunerRegistry.ParseSettings(new[] { "init=zero" }));
        var p = model.named_parameters().Where(n => n.name.StartsWith("blocks.0.adapter_mlp.")).ToDictionary(n => n.name[21..], n => n.parameter.detach());
        Assert.Equal(0f, p["down.weight"].abs().max().item<float>());
        Assert.Equal(0f, p["up.bias"].abs().max().item<float>());
        Assert.True(p["up.weight"].abs().max().item<float>() > 0);
        Assert.True(p["down.bias"].abs().max().item<float>() > 0);
    }

    [Fact]
    public void Vit_b16_counts_follow_2dr_plus_r_plus_d_per_adapter()
    {
        const long D = 768;
        Assert.Equal(24 * (2 * D * 8 + 8 + D), NewMethodKit.VitBCount("adapter"));
        Assert.Equal(24 * (2 * D * 8 + 8 + D + 1), NewMethodKit.VitBCount("adapter", "learnable_scale=true"));
        Assert.Equal(12 * (2 * D * 16 + 16 + D), NewMethodKit.VitBCount("adapter", "rank=16", "branches=mlp", "position=parallel"));
        // Its Pfeiffer and Houlsby placements give those methods' counts.
        Assert.Equal(NewMethodKit.VitBCount("adapter-pfeiffer"), NewMethodKit.VitBCount("adapter", "branches=mlp"));
        Assert.Equal(NewMethodKit.VitBCount("adapter-houlsby"), NewMethodKit.VitBCount("adapter"));
    }

    [Theory]
    [InlineData("after", "xavier")]
    [InlineData("parallel", "lora")]
    [InlineData("before", "lora-xavier")]
    public void Trains_alone(string position, string init) =>
        NewMethodKit.AssertTrains("adapter", $"position={position}", $"init={init}", "learnable_scale=true");

    [Theory]
    [InlineData("position=middle", "'position' must be one of before, after, parallel, got 'middle'")]
    [InlineData("init=orthogonal", "'init' must be one of zero, xavier, lora, lora-xavier, got 'orthogonal'")]
    [InlineData("ln=inside", "'ln' must be one of before, after, got 'inside'")]
    [InlineData("branches=ffn", "'branches' entries must be attn or mlp, got 'ffn'")]
    [InlineData("rank=0", "'rank' must be >= 1, got 0")]
    public void Bad_options_are_one_line_naming_them(string set, string expected)
    {
        var e = NewMethodKit.BadSetting("adapter", set);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
