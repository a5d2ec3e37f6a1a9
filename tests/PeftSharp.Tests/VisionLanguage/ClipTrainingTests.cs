using PeftSharp.Interop;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Suite;
using PeftSharp.Tuners;
using PeftSharp.VisionLanguage;
using static TorchSharp.torch;

namespace PeftSharp.Tests.VisionLanguage;

public class ClipTrainingTests
{
    /// <summary>A CLIP small enough to train in a test, over the real BPE vocabulary (captions tokenize for real).</summary>
    internal static ClipModel SmallClip(int seed = 1)
    {
        manual_seed(seed);
        return new ClipModel(new ClipConfig
        {
            EmbedDim = 32,
            Vision = ClipConfig.VisionTower(32, 8, 64, 2, 32, 2.0, 32, false),
            Text = new ClipTextConfig { ContextLength = 16, Width = 32, Heads = 2, Layers = 1, MlpRatio = 2 },
        });
    }

    [Fact]
    public void Contrastive_loss_equals_the_hand_computed_value()
    {
        // Unit features, scale exp(0) = 1: logits [[1, 0], [0, 1]]; each row's cross-entropy is
        // log(e + 1) - 1, in both directions.
        using var images = tensor(new float[] { 2, 0, 0, 3 }, new long[] { 2, 2 });
        using var texts = tensor(new float[] { 1, 0, 0, 5 }, new long[] { 2, 2 });
        using var scale = tensor(0f);
        double expected = Math.Log(Math.E + 1) - 1;
        Assert.Equal(expected, ClipLosses.Contrastive(images, texts, scale).item<float>(), 5);

        // Two pairs of one group: the target is uniform over both, so row i's loss is -½ Σ_j log softmax_ij.
        // logits [[1,0],[0,1]]: -½(log p + log(1-p)) with p = e/(e+1).
        double p = Math.E / (Math.E + 1);
        Assert.Equal(-0.5 * (Math.Log(p) + Math.Log(1 - p)), ClipLosses.Contrastive(images, texts, scale, new[] { 7, 7 }).item<float>(), 5);
        // Distinct groups are exactly open_clip's loss.
        Assert.Equal(expected, ClipLosses.Contrastive(images, texts, scale, new[] { 1, 2 }).item<float>(), 5);
    }

    [Fact]
    public void Retrieval_recall_counts_a_hit_within_the_top_k()
    {
        // Three pairs; image 0 finds text 0 first, image 1 finds text 0 then text 1, image 2 finds text 2.
        using var images = tensor(new float[] { 1, 0, 0, 0.8f, 0.6f, 0, 0, 0, 1 }, new long[] { 3, 3 });
        using var texts = tensor(new float[] { 1, 0, 0, 0, 1, 0, 0, 0, 1 }, new long[] { 3, 3 });
        var r = ClipEvaluation.Retrieval(images, texts, new[] { 0, 1, 2 });
        Assert.Equal(200.0 / 3, r.ImageToTextR1, 6);
        Assert.Equal(100, r.ImageToTextR5, 6);
        // Text 1 is nearest image 1 (0.6) — image 0 scores 0 — so text→image is perfect.
        Assert.Equal(100, r.TextToImageR1, 6);
        // With images 0 and 1 in one group, image 1's first answer (text 0) is a hit.
        Assert.Equal(100, ClipEvaluation.Retrieval(images, texts, new[] { 0, 0, 2 }).ImageToTextR1, 6);
    }

    [Theory]
    [InlineData("sct")]
    [InlineData("spt-lora")]
    [InlineData("noah")]
    public void A_method_with_a_classifier_pre_pass_is_refused_on_the_image_tower_in_one_line(string method)
    {
        using var clip = SmallClip();
        var settings = method switch
        {
            "sct" => new Dictionary<string, string> { ["channels"] = "8" },
            "spt-lora" => new Dictionary<string, string> { ["budget"] = "5000" },
            _ => new Dictionary<string, string>(),
        };
        var peft = ClipRuns.Apply(clip, method, settings, ["visual"]);
        var e = Assert.Throws<PeftSharpException>(() => new ClipTrainer(peft, new ClipTrainOptions { Steps = 1 }));
        Assert.Contains($"method '{method}': its pre-pass (", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void A_few_training_steps_raise_retrieval_recall_on_the_training_pairs()
    {
        using var clip = SmallClip();
        var pairs = VlTasks.Scenes("train", 24, 99, unique: true);
        var before = ClipEvaluation.Retrieval(clip, pairs, Normalization.Inception);
        var peft = ClipRuns.Apply(clip, "full", new Dictionary<string, string>(), ["visual", "text"]);
        var result = new ClipTrainer(peft, new ClipTrainOptions { Steps = 60, BatchSize = 24, Lr = 2e-3, WarmupSteps = 5 }).Fit(pairs);
        var after = ClipEvaluation.Retrieval(clip, pairs, Normalization.Inception);
        Assert.True(result.FinalLoss < result.Losses[0] - 1, $"loss {result.Losses[0]:F3} → {result.FinalLoss:F3}");
        Assert.True(after.Mean > before.Mean + 20, $"mean recall {before.Mean:F1} → {after.Mean:F1}");
    }

    [Fact]
    public void Lora_on_both_towers_trains_only_its_own_tensors_and_classification_learns_the_prompts()
    {
        using var clip = SmallClip(2);
        var frozen = clip.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var prompts = new[] { "a photo of a red thing", "a photo of a blue thing" };
        // Class 0: red-dominant images; class 1: blue-dominant.
        var rng = new Random(3);
        var pixels = Enumerable.Range(0, 32).Select(i => Enumerable.Range(0, 32 * 32 * 3)
            .Select(j => (byte)(j % 3 == (i % 2 == 0 ? 0 : 2) ? 200 + rng.Next(50) : rng.Next(60))).ToArray()).ToArray();
        var labels = Enumerable.Range(0, 32).Select(i => i % 2).ToArray();
        var set = new CaptionSet("colours", 32, pixels, labels.Select(l => prompts[l]).ToArray(), labels: labels, classPrompts: prompts);
        var peft = ClipRuns.Apply(clip, "lora", new Dictionary<string, string> { ["rank"] = "4" }, ["visual", "text"]);
        Assert.Contains(peft.TrainableParameters(), p => p.Name.StartsWith("text.", StringComparison.Ordinal));
        Assert.Contains(peft.TrainableParameters(), p => p.Name.StartsWith("visual.", StringComparison.Ordinal));
        new ClipTrainer(peft, new ClipTrainOptions { Objective = ClipObjective.Classification, Steps = 40, BatchSize = 16, Lr = 1e-2 }).Fit(set);
        Assert.True(ClipEvaluation.Classify(clip, set, Normalization.Inception).Top1 >= 90);
        foreach (var (name, p) in clip.named_parameters())
            if (frozen.TryGetValue(AdapterFiles.CanonicalName(name), out var original) && !peft.TrainableParameters().Any(t => t.Name == name))
                TensorAssert.Identical(original, p, name);
    }

    [Fact]
    public void A_merged_clip_saves_as_a_plain_open_clip_checkpoint_that_reloads_to_identical_outputs()
    {
        using var clip = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
        var peft = ClipRuns.Apply(clip, "lora", new Dictionary<string, string> { ["rank"] = "2" }, ["visual", "text"]);
        using (no_grad())
            foreach (var (_, p) in peft.TrainableParameters()) p.normal_(0, 0.2); // LoRA's B starts at zero
        manual_seed(5);
        using var images = rand(3, 3, 32, 32);
        using var tokens = randint(1, 999, new long[] { 3, 16 });
        clip.eval();
        var (expected, _) = clip.forward(images, tokens);
        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, Path.Combine(dir, "adapter"));
        var plain = (ClipModel)peft.MergeAndUnload();
        string merged = Path.Combine(dir, "merged.safetensors");
        ModelCheckpoints.SaveClip(merged, plain);
        var reloaded = ModelCheckpoints.LoadClip(merged);
        Assert.True(reloaded.Report.IsStrictMatch, reloaded.Report.Describe());
        reloaded.Model.eval();
        using (no_grad()) TensorAssert.Close(expected, reloaded.Model.forward(images, tokens).LogitsPerImage, atol: 1e-4, what: "merged logits");

        // The adapter alone, applied to a fresh base, gives the same outputs too.
        using var fresh = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
        AdapterFiles.Load(fresh, Path.Combine(dir, "adapter"));
        fresh.eval();
        using (no_grad()) TensorAssert.Close(expected, fresh.forward(images, tokens).LogitsPerImage, atol: 1e-4, what: "adapter logits");
        using var vit = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        Assert.Contains("an adapter for a CLIP model", Assert.Throws<PeftSharpException>(() => AdapterFiles.Load(vit, Path.Combine(dir, "adapter"))).Message);
    }

    [Fact]
    public void Every_method_applies_to_the_text_tower_or_says_it_needs_image_patches()
    {
        manual_seed(4);
        using var tokens = randint(1, 999, new long[] { 2, 16 });
        var needImages = new List<string>();
        foreach (var method in TunerRegistry.ImageMethods.Where(m => m.Id != "linear"))
        {
            using var clip = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
            try
            {
                var peft = ClipRuns.Apply(clip, method.Id, new Dictionary<string, string>(), ["text"]);
                Assert.True(peft.CountTrainable() > 0, method.Id);
                if (method.Id != "full") // full fine-tuning trains the whole model, by design
                    Assert.All(peft.TrainableParameters(), p => Assert.StartsWith("text.", p.Name));
                using var features = clip.EncodeText(tokens);
                features.sum().backward();
                Assert.Contains(peft.TrainableParameters(), p => p.Parameter.grad is not null && p.Parameter.grad.abs().sum().item<float>() > 0);
            }
            catch (PeftSharpException e)
            {
                // An image encoder (RequireVit) or any encoder of patch tokens (RequirePatches: VPT, also the video ViT).
                Assert.True(e.Message.Contains("needs an image encoder") || e.Message.Contains("needs an encoder of patch tokens"), e.Message);
                needImages.Add(method.Id);
            }
        }
        // Prompt tokens in front of patches, and ConvPass's and Mona's patch grid, have no meaning on a causal text
        // sequence; SCT's, GPS's, SPT's and NOAH's pre-passes read the image classifier's training split (SPT also tunes the
        // class token), VQT's summaries feed the image pooling; LAST reads the
        // image encoder's embedding and replaces its last output.
        Assert.Equal(new[] { "convpass", "gps", "last", "mona", "noah", "sct", "spt-adapter", "spt-lora", "vpt-deep", "vpt-shallow", "vqt" }, needImages.Order());
    }

    [Fact]
    public void Half_precision_storage_loads_back_within_float16_rounding()
    {
        using var clip = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
        string path = Path.Combine(TestFiles.TempDir(), "half.safetensors");
        ModelCheckpoints.SaveClip(path, clip, half: true);
        using (var file = SafeTensorsFile.Open(path)) Assert.All(file.Tensors, t => Assert.Equal(SafeTensorDType.F16, t.DType));
        using var again = ModelCheckpoints.LoadClip(path).Model;
        var original = clip.state_dict();
        foreach (var (name, t) in again.state_dict())
            TensorAssert.Close(original[name], t, atol: 1e-3, rtol: 1e-3, what: name);
    }
}

public class ClipJobTests
{
    static ClipJob Job(string method, Dictionary<string, string> settings, Precision precision = Precision.Float32)
    {
        var pairs = VlTasks.Scenes("train", 8, 99, unique: true);
        var task = new VlTask("tiny", "tiny", false, ClipObjective.Contrastive, pairs, pairs);
        return new ClipJob(new ClipRunRequest(task, 1.0, method, settings, ["visual"], new ClipTrainOptions { Precision = precision }),
                           TestFiles.ClipCheckpoint, "clip sha256:00");
    }

    [Fact]
    public void A_clip_run_is_keyed_on_the_resolved_hyperparameters_under_its_family()
    {
        // Stating a default is the same run; a changed value is another (before, raw settings were the key, so a
        // changed default silently reused a run trained with the old one).
        var implicitRank = Job("lora", []);
        int rank = implicitRank.Spec.HyperJson.Contains("\"rank\":8") ? 8 : throw new Xunit.Sdk.XunitException(implicitRank.Spec.HyperJson);
        Assert.Equal(implicitRank.Spec.Key, Job("lora", new() { ["rank"] = rank.ToString() }).Spec.Key);
        Assert.NotEqual(implicitRank.Spec.Key, Job("lora", new() { ["rank"] = "4" }).Spec.Key);
        Assert.Equal(ClipJob.Family, implicitRank.Spec.Family);
        var zeroShot = Job(ClipRunRequest.ZeroShot, []);
        Assert.Equal(("none", "{}", 0.0), (zeroShot.Spec.TrainSplit, zeroShot.Spec.HyperJson, zeroShot.Spec.Lr));
    }

    [Fact]
    public void Bf16_clip_training_learns_scores_like_float32_and_is_another_run()
    {
        using var clip = ClipTrainingTests.SmallClip();
        var pairs = VlTasks.Scenes("train", 24, 99, unique: true);
        var before = ClipEvaluation.Retrieval(clip, pairs, Normalization.Inception);
        var peft = ClipRuns.Apply(clip, "full", new Dictionary<string, string>(), ["visual", "text"]);
        var result = new ClipTrainer(peft, new ClipTrainOptions { Steps = 60, BatchSize = 24, Lr = 2e-3, WarmupSteps = 5, Precision = Precision.BFloat16 }).Fit(pairs);
        Assert.All(peft.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        var (images32, texts32) = ClipEvaluation.Embed(clip, pairs, Normalization.Inception);
        var (images16, texts16) = ClipEvaluation.Embed(clip, pairs, Normalization.Inception, precision: Precision.BFloat16);
        Assert.Equal(ScalarType.Float32, images16.dtype);
        Assert.False(images16.eq(images32).all().item<bool>(), "bf16 embeddings equal float32 ones: the precision was not applied");
        TensorAssert.Close(images32, images16, atol: 0.05, rtol: 0, what: "image features");
        TensorAssert.Close(texts32, texts16, atol: 0.05, rtol: 0, what: "text features");
        var after = ClipEvaluation.Retrieval(clip, pairs, Normalization.Inception, Precision.BFloat16);
        Assert.True(result.FinalLoss < result.Losses[0] - 1, $"loss {result.Losses[0]:F3} → {result.FinalLoss:F3}");
        Assert.True(after.Mean > before.Mean + 20, $"mean recall {before.Mean:F1} → {after.Mean:F1}");

        // The precision enters the key only when it is not float32 (stored float32 runs keep theirs), zero-shot too.
        Assert.DoesNotContain("precision", Job("lora", []).Spec.TrainingJson);
        Assert.Contains("\"precision\":\"bf16\"", Job("lora", [], Precision.BFloat16).Spec.TrainingJson);
        Assert.NotEqual(Job("lora", []).Spec.Key, Job("lora", [], Precision.BFloat16).Spec.Key);
        Assert.NotEqual(Job(ClipRunRequest.ZeroShot, []).Spec.Key, Job(ClipRunRequest.ZeroShot, [], Precision.BFloat16).Spec.Key);
    }
}
