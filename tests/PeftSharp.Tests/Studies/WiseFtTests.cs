using PeftSharp.Studies;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Studies;

public class WiseFtTests
{
    [Fact]
    public void Interpolation_is_the_weighted_sum_and_exact_at_both_ends()
    {
        var start = new Dictionary<string, Tensor> { ["w"] = tensor(new[] { 1f, 2f, 0.1f }) };
        var end = new Dictionary<string, Tensor> { ["w"] = tensor(new[] { 3f, 6f, 0.7f }) };
        Assert.Equal(new[] { 1.5f, 3f, 0.25f }, WiseFt.Interpolate(start, end, 0.25)["w"].data<float>().ToArray());
        TensorAssert.Identical(start["w"], WiseFt.Interpolate(start, end, 0)["w"], "α = 0");
        TensorAssert.Identical(end["w"], WiseFt.Interpolate(start, end, 1)["w"], "α = 1");
        Assert.Equal(11, WiseFt.Alphas.Count);
        Assert.Equal(0.3, WiseFt.Alphas[3]);
    }

    [Fact]
    public void Interpolation_refuses_models_that_differ_and_alphas_outside_zero_to_one()
    {
        var a = new Dictionary<string, Tensor> { ["w"] = zeros(2) };
        var other = new Dictionary<string, Tensor> { ["v"] = zeros(2) };
        var wide = new Dictionary<string, Tensor> { ["w"] = zeros(3) };
        Assert.Contains("differ in tensor", Assert.Throws<PeftSharpException>(() => WiseFt.Interpolate(a, other, 0.5)).Message);
        Assert.Contains("'w' is [2]", Assert.Throws<PeftSharpException>(() => WiseFt.Interpolate(a, wide, 0.5)).Message);
        Assert.Contains("α must be in [0, 1]", Assert.Throws<PeftSharpException>(() => WiseFt.Interpolate(a, a, 1.5)).Message);
    }

    [Fact]
    public void The_houlsby_adapter_is_reported_as_not_sweepable_and_why()
    {
        var notes = RobustnessStudy.NotSwept(new[] { "linear", "full", "lora", "vpt-deep" }, new[] { "full" });
        Assert.Equal(new[] { "lora", "vpt-deep", "adapter-houlsby" }, notes.Keys);
        Assert.Contains("Not linear on the frozen path, so not mergeable", notes["adapter-houlsby"]);
        Assert.Contains("Mergeable, so it could be swept", notes["lora"]);
    }

    /// <summary>The fixture ViT with a 4-class head.</summary>
    static PeftSharp.Models.VisionTransformer Fixture() => new BackboneSpec(null, null, TestFiles.VitCheckpoint).Load(4, 0, out _);

    static void Perturb(IEnumerable<Tensor> parameters, double scale)
    {
        using var _ = no_grad();
        foreach (var p in parameters) p.add_(randn_like(p) * scale);
    }

    [Theory]
    [InlineData("lora")]             // merged: W0 + α·ΔW
    [InlineData("ssf")]              // merged
    [InlineData("repadapter")]       // the mergeable adapter: merged into the next linear layer
    [InlineData("adapter-pfeiffer")] // not mergeable: its own parameters interpolate from the zero-output init
    [InlineData("full")]
    public void Alpha_zero_is_the_linear_probe_and_alpha_one_the_fine_tuned_model_exactly(string method)
    {
        manual_seed(3);
        var images = randn(5, 3, 32, 32);
        // The linear probe: the pretrained backbone with a trained (here: random) head.
        using var probe = Fixture();
        Perturb(probe.head.parameters(), 0.5);
        probe.eval();
        var probeHead = WiseFt.Snapshot(probe).Where(kv => kv.Key.StartsWith("head.", StringComparison.Ordinal)).ToDictionary();
        using var probeLogits = probe.forward(images);

        // The fine-tuned model: every trainable tensor moved away from its initial value, as training does.
        using var vit = Fixture();
        var peft = PeftModel.Create(vit, method);
        var initial = WiseFt.Snapshot(vit);
        Perturb(peft.TrainableParameters().Select(p => (Tensor)p.Parameter), 0.2);
        vit.eval();
        if (peft.Mergeable) peft.Merge();
        using var tunedLogits = vit.forward(images);

        using var wise = new WiseFtModel(peft, initial, probeHead);
        wise.SetAlpha(0);
        using (var atZero = vit.forward(images)) TensorAssert.Identical(probeLogits, atZero, $"{method}: α = 0 vs the linear probe");
        wise.SetAlpha(1);
        using (var atOne = vit.forward(images)) TensorAssert.Identical(tunedLogits, atOne, $"{method}: α = 1 vs the fine-tuned model");
        wise.SetAlpha(0.5);
        using (var half = vit.forward(images))
        {
            Assert.False(half.allclose(probeLogits), "α = 0.5 should be neither end");
            Assert.False(half.allclose(tunedLogits), "α = 0.5 should be neither end");
        }
    }
}
