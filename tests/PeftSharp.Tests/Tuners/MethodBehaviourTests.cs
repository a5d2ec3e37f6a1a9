using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

/// <summary>For every method: it trains, the frozen base stays bit-identical, its initial output is the base's
/// where its initialisation says so, and mergeable methods merge and unmerge exactly.</summary>
public class MethodBehaviourTests
{
    public static IEnumerable<object[]> AllMethods() => TunerRegistry.ImageMethods.Select(m => new object[] { m.Id });
    public static IEnumerable<object[]> MergeableMethods() => TunerRegistry.ImageMethods.Where(m => m.Mergeable).Select(m => new object[] { m.Id })
        .Concat(new[] { new object[] { "ssf+lora" }, new object[] { "lora+ssf" }, new object[] { "lora+repadapter+difffit" }, new object[] { "bitfit+fact-tk" } });

    /// <summary>Methods whose initialisation leaves the function unchanged (zero-init up/B/V, identity conv, γ = 1).</summary>
    public static IEnumerable<object[]> IdentityInitMethods() => new[]
    {
        "linear", "full", "partial-k", "bitfit", "layernorm", "difffit", "adapter-pfeiffer", "adaptformer", "convpass",
        "repadapter", "lora", "dora", "fact-tt", "fact-tk", "dtl", "hydra", "spt-lora", "spt-adapter", "last",
    }.Select(m => new object[] { m });

    [Theory]
    [MemberData(nameof(AllMethods))]
    public void Trains_its_parameters_and_leaves_the_frozen_base_bit_identical(string method)
    {
        manual_seed(1);
        using var model = TunerTestKit.Backbone();
        // The head is frozen (except for the linear probe) so the loss can only fall through the method itself.
        var peft = PeftModel.Create(model, method, TunerTestKit.SettingsFor(method), new PeftOptions { TrainHead = method == "linear" });
        var trainable = peft.TrainableParameters();
        Assert.NotEmpty(trainable);
        var trainableSet = trainable.Select(p => p.Parameter).ToHashSet(ReferenceEqualityComparer.Instance);
        var frozen = TunerTestKit.Snapshot(model.named_parameters().Where(p => !trainableSet.Contains(p.parameter)).Select(p => (p.name, p.parameter)));
        var before = TunerTestKit.Snapshot(trainable);
        var (x, y) = TunerTestKit.Batch();
        double lossBefore = TunerTestKit.EvalLoss(model, x, y);

        TunerTestKit.Train(peft, x, y);

        double lossAfter = TunerTestKit.EvalLoss(model, x, y);
        Assert.True(lossAfter < lossBefore - 1e-3, $"{method}: loss {lossBefore:F4} → {lossAfter:F4}");
        foreach (var (name, p) in model.named_parameters().Where(p => frozen.ContainsKey(p.name)))
            TensorAssert.Identical(frozen[name], p, $"{method}: frozen {name}");
        Assert.Contains(peft.TrainableParameters(), p => !p.Parameter.eq(before[p.Name]).all().item<bool>());
    }

    [Theory]
    [MemberData(nameof(IdentityInitMethods))]
    public void Initial_output_equals_the_base_models(string method)
    {
        manual_seed(2);
        var (x, _) = TunerTestKit.Batch();
        using var reference = TunerTestKit.Backbone();
        var expected = TunerTestKit.EvalLogits(reference, x);
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, method);
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, x), atol: 1e-6, rtol: 1e-6, what: method);
    }

    [Fact]
    public void Ssf_starts_near_identity_and_is_exactly_identity_at_scale_one_shift_zero()
    {
        manual_seed(3);
        var (x, _) = TunerTestKit.Batch();
        using var reference = TunerTestKit.Backbone();
        var expected = TunerTestKit.EvalLogits(reference, x);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "ssf");
        var scales = model.named_parameters().Where(p => p.name.EndsWith("ssf_scale")).Select(p => p.parameter).ToList();
        var all = cat(scales.Select(s => s.detach()).ToArray());
        Assert.InRange(all.mean().item<float>(), 0.99, 1.01);
        Assert.InRange(all.std().item<float>(), 0.015, 0.025);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("ssf_")))
                p.copy_(name.EndsWith("ssf_scale") ? ones_like(p) : zeros_like(p));
        TensorAssert.Close(expected, TunerTestKit.EvalLogits(model, x), atol: 1e-6, rtol: 1e-6, what: "ssf at identity");
    }

    [Theory]
    [MemberData(nameof(MergeableMethods))]
    public void Merged_output_matches_unmerged_and_unmerge_restores_the_base_exactly(string method)
    {
        manual_seed(4);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method);
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 3);
        var unmerged = TunerTestKit.EvalLogits(model, x);
        var state = TunerTestKit.Snapshot(model.named_parameters().Select(p => (p.name, p.parameter)));

        peft.Merge();
        TensorAssert.Close(unmerged, TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-5, what: $"{method} merged");
        peft.Unmerge();
        foreach (var (name, p) in model.named_parameters())
            TensorAssert.Identical(state[name], p, $"{method} after unmerge: {name}");
        TensorAssert.Identical(unmerged, TunerTestKit.EvalLogits(model, x), $"{method} unmerged again");
    }

    [Theory]
    [MemberData(nameof(MergeableMethods))]
    public void Merge_and_unload_leaves_exactly_the_timm_structure(string method)
    {
        manual_seed(5);
        using var plain = TunerTestKit.Backbone();
        var timmKeys = StateDictLoader.StateDict(plain).Keys.ToList();
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method);
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 3);
        var tuned = TunerTestKit.EvalLogits(model, x);
        var merged = (VisionTransformer)peft.MergeAndUnload();
        Assert.Equal(timmKeys, StateDictLoader.StateDict(merged).Keys.ToList());
        Assert.DoesNotContain(merged.named_modules(), m => m.module is ModuleWrapper || m.module is BlockTuner || m.module is EncoderTuner);
        TensorAssert.Close(tuned, TunerTestKit.EvalLogits(merged, x), atol: 1e-5, rtol: 1e-5, what: $"{method} merged+unloaded");

        // And it is an ordinary checkpoint: saved and reloaded as a plain ViT, same outputs.
        string path = Path.Combine(TestFiles.TempDir(), "merged.safetensors");
        ModelCheckpoints.SaveVit(path, merged);
        using var reloaded = ModelCheckpoints.LoadVit(path).Model;
        TensorAssert.Identical(TunerTestKit.EvalLogits(merged, x), TunerTestKit.EvalLogits(reloaded, x), "reloaded merged checkpoint");
    }

    [Theory]
    [InlineData("vpt-shallow")]
    [InlineData("vpt-deep")]
    [InlineData("adapter-pfeiffer")]
    [InlineData("adapter-houlsby")]
    [InlineData("adaptformer")]
    [InlineData("convpass")]
    [InlineData("prefix")]
    [InlineData("dtl")]
    [InlineData("adapter-plus")]
    [InlineData("mona")]
    [InlineData("spt-adapter")]
    [InlineData("noah")]
    [InlineData("last")]
    [InlineData("lora+vpt-deep")]
    public void Non_mergeable_methods_say_so_when_asked_to_merge(string method)
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method);
        var e = Assert.Throws<PeftSharpException>(() => peft.Merge());
        Assert.Contains("cannot merge", e.Message);
        Assert.Contains(method.Split('+').Last(), e.Message);
    }

    [Theory]
    [InlineData("nonsense", null, "unknown method 'nonsense'")]
    [InlineData("lora", "rank=0", "'rank' must be >= 1, got 0")]
    [InlineData("vpt-deep", "prompts=-3", "'prompts' must be >= 1, got -3")]
    [InlineData("lora", "rank=abc", "'rank' must be an integer")]
    [InlineData("lora", "prompts=5", "unknown hyperparameter 'prompts'")]
    [InlineData("lora", "dropout=1.5", "'dropout' must be in [0, 0.99]")]
    [InlineData("lora", "targets=nothere", "match no Linear layer")]
    [InlineData("partial-k", "k=9", "exceeds the 2 blocks")]
    [InlineData("lora+lora", null, "appears twice")]
    public void Bad_methods_and_hyperparameters_get_one_clear_error(string method, string? set, string expected)
    {
        using var model = TunerTestKit.Backbone();
        var settings = set is null ? null : TunerRegistry.ParseSettings(new[] { set });
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(model, method, settings));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Summary_reports_trainable_total_and_percent()
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "lora", TunerRegistry.ParseSettings(new[] { "rank=4" }));
        long lora = 2 * 4 * (64 + 192), head = 64 * 10 + 10;
        Assert.Equal(lora, peft.CountTrainable());
        Assert.Equal(lora + head, peft.CountTrainable(includeHead: true));
        Assert.Contains($"trainable params: {lora + head:N0}", peft.Summary());
        Assert.Contains("trainable%", peft.Summary());
    }
}
