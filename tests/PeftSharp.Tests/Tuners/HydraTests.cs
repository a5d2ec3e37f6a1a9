using PeftSharp.Models;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

/// <summary>Hydra (Kim et al. 2024): both branches' formula on attn.proj and mlp.fc2, the merge formula, count,
/// training, errors.</summary>
public class HydraTests
{
    const double Scale = 0.3;

    static (VisionTransformer Model, PeftModel Peft) Tuned()
    {
        manual_seed(42);
        var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "hydra", TunerRegistry.ParseSettings(new[] { "rank=3", $"scale={Scale}" }));
        NewMethodKit.Randomize(model, "hydra_");
        model.eval();
        return (model, peft);
    }

    static Tensor P(VisionTransformer model, string name) => model.named_parameters().Single(p => p.name == name).parameter.detach();

    [Theory]
    [InlineData("blocks.0.attn.proj", 64)]
    [InlineData("blocks.1.mlp.fc2", 256)]
    public void Each_layer_computes_w0_u_plus_b0_plus_s_par_u_plus_s_seq_of_the_output(string path, int inFeatures)
    {
        var (model, _) = Tuned();
        using var _m = model;
        var u = randn(2, 5, inFeatures);
        var w0 = P(model, $"{path}.base_layer.weight");
        var b0 = P(model, $"{path}.base_layer.bias");
        Tensor Branch(string b, Tensor input) =>
            input.matmul(P(model, $"{path}.{b}.down_proj.weight").t()).add(P(model, $"{path}.{b}.down_proj.bias"))
                 .matmul(P(model, $"{path}.{b}.up_proj.weight").t()).add(P(model, $"{path}.{b}.up_proj.bias"));
        var baseOut = u.matmul(w0.t()) + b0;
        var expected = baseOut + Scale * Branch("hydra_par", u) + Scale * Branch("hydra_seq", baseOut);

        var layer = (nn.Module<Tensor, Tensor>)model.named_modules().Single(m => m.name == path).module;
        using var _g = no_grad();
        TensorAssert.Close(expected, layer.forward(u), atol: 1e-5, rtol: 1e-4, what: path);
    }

    [Fact]
    public void Merging_writes_w0_plus_s_of_w_par_plus_w_seq_w0_and_keeps_the_outputs()
    {
        var (model, peft) = Tuned();
        using var _m = model;
        const string path = "blocks.0.mlp.fc2";
        var w0 = P(model, $"{path}.base_layer.weight").clone();
        Tensor W(string b) => P(model, $"{path}.{b}.up_proj.weight").matmul(P(model, $"{path}.{b}.down_proj.weight"));
        var expectedWeight = w0 + Scale * (W("hydra_par") + W("hydra_seq").matmul(w0));
        var (x, _) = TunerTestKit.Batch();
        var unmerged = TunerTestKit.EvalLogits(model, x);

        peft.Merge();
        TensorAssert.Close(expectedWeight, P(model, $"{path}.base_layer.weight"), atol: 1e-6, rtol: 1e-5, what: "merged fc2 weight");
        TensorAssert.Close(unmerged, TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-5, what: "merged logits");
    }

    [Fact]
    public void Vit_b16_count_is_239712_at_rank_2()
    {
        Assert.Equal(239_712L, NewMethodKit.VitBCount("hydra", "rank=2"));
        foreach (int r in new[] { 1, 8 }) Assert.Equal(12L * (8452 * r + 3072), NewMethodKit.VitBCount("hydra", $"rank={r}"));
    }

    [Fact]
    public void Starts_as_the_base_model_and_trains_alone()
    {
        manual_seed(43);
        var (x, _) = TunerTestKit.Batch();
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "hydra");
        TensorAssert.Close(TunerTestKit.EvalLogits(plain, x), TunerTestKit.EvalLogits(model, x), atol: 1e-6, rtol: 1e-6, what: "hydra at init");
        NewMethodKit.AssertTrains("hydra", "scale=1");
    }

    [Theory]
    [InlineData("rank=0", "'rank' must be >= 1, got 0")]
    [InlineData("scale=-0.5", "'scale' must be >= 0, got -0.5")]
    [InlineData("dropout=1", "'dropout' must be in [0, 0.99], got 1")]
    public void Bad_hyperparameters_are_one_line_naming_them(string set, string expected)
    {
        var e = NewMethodKit.BadSetting("hydra", set);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
