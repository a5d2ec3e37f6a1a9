using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Inference;
using PeftSharp.Models;
using PeftSharp.MultiAdapter;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.MultiAdapter;

/// <summary>Adapters for different tasks on one backbone: a mixed batch gives each example the logits of its adapter
/// run alone (each loaded the ordinary way, on its own copy of the base); adapters that cannot share are one line.</summary>
public class MultiAdapterTests
{
    static readonly VitConfig Tiny = new() { ImgSize = 16, PatchSize = 4, EmbedDim = 24, Depth = 2, NumHeads = 3, NumClasses = 4 };

    /// <summary>A base checkpoint of random weights (seeded) at <paramref name="path"/>.</summary>
    static string SaveBase(string path, int seed)
    {
        manual_seed(seed);
        using var vit = new VisionTransformer(Tiny);
        using (no_grad()) foreach (var p in vit.parameters()) p.copy_(randn_like(p) * 0.3);
        ModelCheckpoints.SaveVit(path, vit);
        return path;
    }

    /// <summary>An adapter of <paramref name="method"/> with random (non-zero) trained tensors, saved against <paramref name="baseCheckpoint"/>.</summary>
    static string SaveAdapter(string dir, string baseCheckpoint, string method, Dictionary<string, string> settings, int classes, int seed)
    {
        using var vit = ModelCheckpoints.LoadVit(baseCheckpoint).Model;
        vit.ResetClassifier(classes);
        var peft = PeftModel.Create(vit, method, settings);
        manual_seed(seed);
        using (no_grad()) foreach (var (_, p) in peft.TrainableParameters()) p.copy_(randn_like(p) * 0.3);
        AdapterFiles.Save(peft, dir, baseCheckpoint, new Preprocessing(Tiny.ImgSize, Normalization.FromName("imagenet")),
                          Enumerable.Range(0, classes).Select(c => $"{Path.GetFileName(dir)}-{c}").ToList());
        return dir;
    }

    [Fact]
    public void A_mixed_batch_gives_each_example_its_adapter_run_alone()
    {
        string root = TestFiles.TempDir("multi-adapter");
        try
        {
            string checkpoint = SaveBase(Path.Combine(root, "base.safetensors"), 1);
            // LoRA on q and v only (row sections), DoRA on qkv and fc1, LoRA on proj with alpha: different targets, heads and classes.
            var adapters = new[]
            {
                SaveAdapter(Path.Combine(root, "pets"), checkpoint, "lora", new() { ["rank"] = "2", ["targets"] = "q,v" }, 3, 11),
                SaveAdapter(Path.Combine(root, "cars"), checkpoint, "dora", new() { ["rank"] = "3", ["targets"] = "qkv,mlp.fc1" }, 5, 12),
                SaveAdapter(Path.Combine(root, "birds"), checkpoint, "lora", new() { ["rank"] = "2", ["alpha"] = "4", ["targets"] = "proj" }, 2, 13),
            };
            using var multi = MultiAdapterClassifier.Load(checkpoint, adapters);
            Assert.Equal(["pets", "cars", "birds"], multi.Model.AdapterNames);

            manual_seed(5);
            using var images = randn(7, 3, 16, 16);
            string[] names = ["cars", "pets", "cars", "birds", "pets", "cars", "birds"];
            IReadOnlyList<AdapterLogits> mixed;
            using (inference_mode()) mixed = multi.Model.Forward(images, names);
            Assert.Equal(["cars", "pets", "birds"], mixed.Select(g => g.Adapter));
            double worst = 0;
            foreach (var group in mixed)
            {
                Assert.Equal(Enumerable.Range(0, 7).Where(i => names[i] == group.Adapter).Select(i => (long)i), group.Examples);
                using var alone = Classifier.Load(new ClassifierSource { Checkpoint = checkpoint, Adapter = Path.Combine(root, group.Adapter) });
                using var own = images.index_select(0, tensor(group.Examples));
                Tensor expected;
                using (inference_mode()) expected = alone.Logits(own);
                Assert.Equal(expected.shape, group.Logits.shape);
                var e = expected.data<float>().ToArray();
                var a = group.Logits.data<float>().ToArray();
                for (int i = 0; i < e.Length; i++) worst = Math.Max(worst, Math.Abs(e[i] - a[i]));
                // The update must matter: the base's features through the same head differ.
                Assert.True(expected.abs().max().item<float>() > 0.1f);
            }
            Assert.True(worst <= 1e-6, $"largest difference from the adapters run alone: {worst:E2}");
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void Adapters_that_cannot_share_the_backbone_are_refused_naming_the_adapter()
    {
        string root = TestFiles.TempDir("multi-adapter-refused");
        try
        {
            string checkpoint = SaveBase(Path.Combine(root, "base.safetensors"), 1);
            string other = SaveBase(Path.Combine(root, "other.safetensors"), 2);
            string good = SaveAdapter(Path.Combine(root, "good"), checkpoint, "lora", new() { ["rank"] = "2" }, 3, 11);
            string elsewhere = SaveAdapter(Path.Combine(root, "elsewhere"), other, "lora", new() { ["rank"] = "2" }, 3, 12);
            string vpt = SaveAdapter(Path.Combine(root, "prompts"), checkpoint, "vpt-shallow", new(), 3, 13);

            var wrongBase = Assert.Throws<PeftSharpException>(() => MultiAdapterClassifier.Load(checkpoint, [good, elsewhere]));
            Assert.StartsWith("adapter 'elsewhere'", wrongBase.Message);
            Assert.Contains("trained on other.safetensors", wrongBase.Message);
            // Forced onto this base, its frozen weights are this base's, and it loads.
            using (var forced = MultiAdapterClassifier.Load(checkpoint, [good, elsewhere], forceBase: true))
                Assert.Equal(2, forced.Model.AdapterNames.Count);

            var method = Assert.Throws<PeftSharpException>(() => MultiAdapterClassifier.Load(checkpoint, [good, vpt]));
            Assert.StartsWith("adapter 'prompts'", method.Message);
            Assert.Contains("'vpt-shallow' cannot share a backbone", method.Message);

            // A PeftModel on another base's weights, added directly, is caught by its frozen tensors.
            using var backbone = ModelCheckpoints.LoadVit(checkpoint).Model;
            using var model = new MultiAdapterModel(backbone);
            using var foreign = ModelCheckpoints.LoadVit(other).Model;
            var differs = Assert.Throws<PeftSharpException>(() => model.AddAdapter("x", PeftModel.Create(foreign, "lora")));
            Assert.Contains("adapter 'x': its base weights differ", differs.Message);
            Assert.Empty(model.AdapterNames);

            foreach (var e in new[] { wrongBase, method, differs }) Assert.DoesNotContain('\n', e.Message);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void Predict_with_several_adapters_gives_each_adapter_its_own_answer_and_refuses_another_base_in_one_line()
    {
        string root = TestFiles.TempDir("multi-adapter-cli");
        try
        {
            string checkpoint = SaveBase(Path.Combine(root, "base.safetensors"), 1);
            string other = SaveBase(Path.Combine(root, "other.safetensors"), 2);
            string pets = SaveAdapter(Path.Combine(root, "pets"), checkpoint, "lora", new() { ["rank"] = "2" }, 3, 11);
            string cars = SaveAdapter(Path.Combine(root, "cars"), checkpoint, "dora", new() { ["rank"] = "2" }, 5, 12);
            string elsewhere = SaveAdapter(Path.Combine(root, "elsewhere"), other, "lora", new() { ["rank"] = "2" }, 3, 13);
            string photos = UserPath.ClassFolders.Create(Path.Combine(root, "photos"), perClass: 2, size: 16);

            var both = Cli.CliRunner.Run("predict", "--checkpoint", checkpoint, "--adapter", pets, "--adapter", cars, "--format", "json", "--top", "2", photos);
            Assert.True(both.ExitCode == 0, both.Stderr);
            var rows = System.Text.Json.Nodes.JsonNode.Parse(both.Stdout)!.AsArray();
            Assert.Equal(2 * 8, rows.Count);
            foreach (var adapter in new[] { pets, cars })
            {
                string name = Path.GetFileName(adapter);
                var alone = Cli.CliRunner.Run("predict", "--checkpoint", checkpoint, "--adapter", adapter, "--format", "json", "--top", "2", photos);
                Assert.True(alone.ExitCode == 0, alone.Stderr);
                var expected = System.Text.Json.Nodes.JsonNode.Parse(alone.Stdout)!.AsArray();
                var mine = rows.Where(r => r!["adapter"]!.GetValue<string>() == name).ToList();
                Assert.Equal(expected.Count, mine.Count);
                for (int i = 0; i < mine.Count; i++)
                {
                    Assert.Equal(expected[i]!["file"]!.GetValue<string>(), mine[i]!["file"]!.GetValue<string>());
                    for (int k = 0; k < 2; k++)
                    {
                        var (e, a) = (expected[i]!["top"]![k]!, mine[i]!["top"]![k]!);
                        Assert.Equal(e["class"]!.GetValue<string>(), a["class"]!.GetValue<string>());
                        Assert.StartsWith(name + "-", a["class"]!.GetValue<string>());
                        Assert.Equal(e["probability"]!.GetValue<double>(), a["probability"]!.GetValue<double>(), 1e-6);
                    }
                }
            }

            var precision = Cli.CliRunner.Run("predict", "--checkpoint", checkpoint, "--adapter", pets, "--adapter", cars, "--precision", "bf16", photos);
            Cli.CliRunner.AssertOneLineError(precision, "--precision does not go with several adapters");
            Assert.Equal(2, precision.ExitCode);
            var refused = Cli.CliRunner.Run("predict", "--checkpoint", checkpoint, "--adapter", pets, "--adapter", elsewhere, photos);
            Cli.CliRunner.AssertOneLineError(refused, "adapter 'elsewhere'");
            Assert.Equal(2, refused.ExitCode);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}
