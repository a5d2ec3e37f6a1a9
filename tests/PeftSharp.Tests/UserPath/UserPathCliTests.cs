using System.Text.Json.Nodes;
using PeftSharp.Results;
using PeftSharp.Tests.Cli;

namespace PeftSharp.Tests.UserPath;

/// <summary>
/// The path every user walks first, through the real program: an image folder → train → save the adapter → eval
/// (merged and not) → predict → merge → eval and predict the merged file. Where two paths compute the same numbers,
/// these tests prove they agree exactly: the predictions stored by training's own test evaluation are the ones eval
/// stores for the saved model, and predict names the same classes.
/// </summary>
public class UserPathCliTests
{
    /// <summary>A method of each kind: low-rank (mergeable), a bottleneck adapter, prompts, full fine-tuning.</summary>
    [Theory]
    [InlineData("lora", true)]
    [InlineData("adapter-pfeiffer", false)]
    [InlineData("vpt-shallow", false)]
    [InlineData("full", true)]
    public void Eval_of_the_saved_model_gives_exactly_the_test_predictions_training_reported(string method, bool mergeable)
    {
        string root = TestFiles.TempDir("user-path");
        try
        {
            string data = ClassFolders.Create(Path.Combine(root, "my-photos"));
            string adapter = Path.Combine(root, "my-adapter"), db = Path.Combine(root, "results.db");
            // No --checkpoint: the shipped backbone, which records inception normalisation (the case eval got wrong).
            var train = CliRunner.Run("train", "--data", data, "--method", method, "--epochs", "3", "--save-adapter", adapter, "--db", db, "--quiet");
            Assert.True(train.ExitCode == 0, train.Stderr);
            Assert.Contains("adapter saved to", train.Stdout);

            var eval = CliRunner.Run("eval", "--data", data, "--adapter", adapter, "--db", db);
            Assert.True(eval.ExitCode == 0, eval.Stderr);
            Assert.Contains("inception normalisation", eval.Stdout);
            foreach (var name in ClassFolders.Names) Assert.Contains(name, eval.Stdout);
            Assert.Contains("confusion matrix", eval.Stdout);
            var merged = CliRunner.Run("eval", "--data", data, "--adapter", adapter, "--merge", "--db", db);
            if (mergeable) Assert.True(merged.ExitCode == 0, merged.Stderr);
            else CliRunner.AssertOneLineError(merged, "cannot merge");

            using var store = ResultsStores.Open(db);
            var runs = store.Runs();
            var trained = runs.Single(r => r.Spec.TrainSplit != "none");
            var evaluations = runs.Where(r => r.Spec.TrainSplit == "none").ToList();
            Assert.Equal(mergeable ? 2 : 1, evaluations.Count);
            var expected = store.Predictions(trained.Id);
            foreach (var evaluation in evaluations)
            {
                Assert.Equal(trained.Top1, evaluation.Top1);
                var got = store.Predictions(evaluation.Id);
                Assert.Equal(expected.Select(p => (p.Index, p.Label, p.Predicted)), got.Select(p => (p.Index, p.Label, p.Predicted)));
                for (int i = 0; i < expected.Count; i++)
                    for (int c = 0; c < expected[i].Logits.Length; c++)
                        Assert.Equal(expected[i].Logits[c], got[i].Logits[c], 1e-4f);
            }
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>In bf16 training's test evaluation and eval of the saved adapter cast the layers the same way
    /// (<see cref="CastOnce"/>), so every test logit is the same number.</summary>
    [Fact]
    public void In_bf16_eval_of_the_saved_adapter_gives_training_s_test_logits_exactly()
    {
        string root = TestFiles.TempDir("user-path-bf16");
        try
        {
            string data = ClassFolders.Create(Path.Combine(root, "my-photos"));
            string adapter = Path.Combine(root, "my-adapter"), db = Path.Combine(root, "results.db");
            var train = CliRunner.Run("train", "--data", data, "--method", "lora", "--epochs", "2", "--precision", "bf16",
                                      "--save-adapter", adapter, "--db", db, "--quiet");
            Assert.True(train.ExitCode == 0, train.Stderr);
            var eval = CliRunner.Run("eval", "--data", data, "--adapter", adapter, "--precision", "bf16", "--db", db);
            Assert.True(eval.ExitCode == 0, eval.Stderr);

            using var store = ResultsStores.Open(db);
            var runs = store.Runs();
            var trained = runs.Single(r => r.Spec.TrainSplit != "none");
            var evaluation = runs.Single(r => r.Spec.TrainSplit == "none");
            Assert.Equal(trained.Top1, evaluation.Top1);
            var expected = store.Predictions(trained.Id);
            var got = store.Predictions(evaluation.Id);
            Assert.Equal(expected.Count, got.Count);
            for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Logits, got[i].Logits);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void Predict_and_merge_name_the_classes_eval_counted_and_the_merged_file_needs_nothing_else()
    {
        string root = TestFiles.TempDir("user-path-predict");
        try
        {
            string data = ClassFolders.Create(Path.Combine(root, "my-photos"));
            string adapter = Path.Combine(root, "ad"), db = Path.Combine(root, "results.db"), mergedFile = Path.Combine(root, "out", "my-model.safetensors");
            Assert.Equal(0, CliRunner.Run("train", "--data", data, "--method", "lora", "--epochs", "3", "--save-adapter", adapter, "--db", db, "--quiet").ExitCode);
            var task = PeftSharp.Data.ImageTask.Open(data);
            var testFiles = Enumerable.Range(0, task.Test.Count).Select(i => task.Test.EntryPath(i)!).ToList();

            var merge = CliRunner.Run("merge", "--adapter", adapter, "--out", mergedFile);
            Assert.True(merge.ExitCode == 0, merge.Stderr);
            var evalMerged = CliRunner.Run("eval", "--data", data, "--checkpoint", mergedFile, "--db", db);
            Assert.True(evalMerged.ExitCode == 0, evalMerged.Stderr);

            using (var store = ResultsStores.Open(db))
            {
                var trained = store.Runs().Single(r => r.Spec.TrainSplit != "none");
                var expected = store.Predictions(trained.Id).OrderBy(p => p.Index).ToList();
                var mergedEval = store.Runs().Single(r => r.Spec.TrainSplit == "none");
                Assert.Equal(expected.Select(p => p.Predicted), store.Predictions(mergedEval.Id).OrderBy(p => p.Index).Select(p => p.Predicted));

                foreach (var (source, args) in new[] { ("adapter", new[] { "--adapter", adapter }), ("merged", new[] { "--checkpoint", mergedFile }) })
                {
                    var predict = CliRunner.Run(["predict", .. args, "--format", "json", "--top", "2", .. testFiles]);
                    Assert.True(predict.ExitCode == 0, predict.Stderr);
                    var rows = JsonNode.Parse(predict.Stdout)!.AsArray();
                    Assert.Equal(testFiles.Count, rows.Count);
                    for (int i = 0; i < rows.Count; i++)
                    {
                        Assert.Equal(testFiles[i], rows[i]!["file"]!.GetValue<string>());
                        var top = rows[i]!["top"]!.AsArray();
                        Assert.Equal(2, top.Count);
                        Assert.Equal(ClassFolders.Names[expected[i].Predicted], top[0]!["class"]!.GetValue<string>());
                        Assert.True(top[0]!["probability"]!.GetValue<double>() >= top[1]!["probability"]!.GetValue<double>(), source);
                    }
                }
            }
            var csv = CliRunner.Run("predict", "--checkpoint", mergedFile, "--format", "csv", Path.Combine(data, "star"));
            Assert.Equal("file,rank,label,class,probability", csv.Stdout.Split('\n')[0]);
            Assert.Equal(30 * 4, csv.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length - 1);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void Bad_user_input_is_one_line_with_exit_code_2_before_any_training()
    {
        string root = TestFiles.TempDir("user-path-bad");
        try
        {
            string data = ClassFolders.Create(Path.Combine(root, "my-photos"), perClass: 12);
            string adapter = Path.Combine(root, "ad"), db = Path.Combine(root, "results.db");
            Assert.Equal(0, CliRunner.Run("train", "--data", data, "--method", "lora", "--epochs", "2", "--save-adapter", adapter, "--db", db, "--quiet").ExitCode);

            void Refused(string expected, params string[] args)
            {
                var r = CliRunner.Run(args);
                CliRunner.AssertOneLineError(r, expected);
                Assert.Equal(2, r.ExitCode);
            }
            Refused("--warmup 50 must be below --epochs 2", "train", "--data", data, "--method", "lora", "--epochs", "2", "--warmup", "50", "--db", db);
            // The adapter was trained on the shipped backbone: another base of the same shape is refused unless forced.
            Refused("the adapter was trained on peftsharp-vit-tiny6-p8-32.safetensors", "eval", "--data", data, "--adapter", adapter, "--checkpoint", OtherBase(root), "--db", db);
            Assert.Equal(0, CliRunner.Run("eval", "--data", data, "--adapter", adapter, "--checkpoint", OtherBase(root), "--force-base", "--db", db).ExitCode);
            Refused("trained with inception normalisation, not none", "eval", "--data", data, "--adapter", adapter, "--normalization", "none", "--db", db);
            Refused("merge: cannot merge", "merge", "--adapter", Train(root, data, db, "vpt-shallow"), "--out", Path.Combine(root, "vpt.safetensors"));

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")))!.AsObject();
            foreach (var (field, value, expected) in new[] { ("num_classes", (JsonNode)"four", "field 'num_classes' must be an integer"), ("train_head", "yes", "field 'train_head' must be true or false") })
            {
                string bad = Path.Combine(root, "bad-" + field);
                Directory.CreateDirectory(bad);
                File.Copy(Path.Combine(adapter, "adapter_model.safetensors"), Path.Combine(bad, "adapter_model.safetensors"));
                var edited = config.DeepClone().AsObject();
                edited[field] = value;
                File.WriteAllText(Path.Combine(bad, "adapter_config.json"), edited.ToJsonString());
                Refused(expected, "eval", "--data", data, "--adapter", bad, "--db", db);
            }
            Refused("training diverged", "train", "--data", data, "--method", "lora", "--epochs", "10", "--lr", "1e6", "--db", db);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void A_label_beyond_the_training_classes_is_an_error_not_a_larger_head()
    {
        string dir = TestFiles.TempDir("lists");
        try
        {
            var rng = new Random(1);
            for (int i = 0; i < 8; i++) ClassFolders.Write(Path.Combine(dir, $"a{i}.png"), i % 2, rng);
            File.WriteAllLines(Path.Combine(dir, "train.txt"), Enumerable.Range(0, 6).Select(i => $"a{i}.png {i % 2}"));
            File.WriteAllLines(Path.Combine(dir, "test.txt"), ["a6.png 0", "a7.png 5"]);
            var r = CliRunner.Run("train", "--data", dir, "--method", "linear", "--epochs", "1", "--db", Path.Combine(dir, "r.db"));
            CliRunner.AssertOneLineError(r, "test.txt line 2: label 5 is beyond the 2 classes the training lists use (0..1)");
            Assert.Equal(2, r.ExitCode);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_preset_without_weights_says_it_starts_from_random_initialisation()
    {
        string root = TestFiles.TempDir("user-path-random");
        try
        {
            string data = ClassFolders.Create(Path.Combine(root, "my-photos"), perClass: 8);
            var r = CliRunner.Run("train", "--data", data, "--method", "linear", "--epochs", "1", "--model", "vit_tiny_patch4_32", "--db", Path.Combine(root, "r.db"), "--quiet");
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("starts from random initialisation", r.Stderr);
            var shipped = CliRunner.Run("train", "--data", data, "--method", "linear", "--epochs", "1", "--db", Path.Combine(root, "r.db"), "--quiet");
            Assert.Equal(0, shipped.ExitCode);
            Assert.DoesNotContain("random", shipped.Stderr);
            using var store = ResultsStores.Open(Path.Combine(root, "r.db"));
            Assert.Equal([RunSpec.RandomInit, "peftsharp-vit-tiny6-p8-32.safetensors"], store.Runs().Select(r => r.Spec.Checkpoint.Split(' ')[0]));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>A base of the shipped backbone's shape with other weights.</summary>
    static string OtherBase(string root)
    {
        string path = Path.Combine(root, "other-base.safetensors");
        if (File.Exists(path)) return path;
        var loaded = PeftSharp.Checkpoints.ModelCheckpoints.LoadVit(PeftSharp.Checkpoints.ShippedModels.DefaultVit);
        using var model = loaded.Model;
        using (TorchSharp.torch.no_grad())
            foreach (var p in model.parameters()) p.mul_(0.5);
        PeftSharp.Checkpoints.ModelCheckpoints.SaveVit(path, model);
        return path;
    }

    static string Train(string root, string data, string db, string method)
    {
        string adapter = Path.Combine(root, method);
        var r = CliRunner.Run("train", "--data", data, "--method", method, "--epochs", "1", "--save-adapter", adapter, "--db", db, "--quiet");
        Assert.True(r.ExitCode == 0, r.Stderr);
        return adapter;
    }
}
