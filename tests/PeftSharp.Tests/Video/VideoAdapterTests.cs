using System.Globalization;
using System.Text.RegularExpressions;
using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Results;
using PeftSharp.Tests.Cli;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Video;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Video;

/// <summary>A video run's adapter through the user path: saved with its base, clip settings and classes, evaluated
/// and merged to the run's own test result, and the CLI's train --family video / eval / predict on it.</summary>
public class VideoAdapterTests
{
    /// <summary>VideoMAE's tiny fixture model (32 px, 4 frames in tubelets of 2, 2 blocks of 64): a video base that
    /// trains in a second.</summary>
    static string Base => TestFiles.Data("videomae_tiny.safetensors");

    /// <summary>A small built-in motion task: 2 training, 1 val, 2 test clips per class (shared by the tests of a process).</summary>
    static readonly Lazy<VideoTask> Motion = new(() => VideoTasks.Ensure("video-motion", TestFiles.TempDir("peftsharp-video"), 2, 1, 2));

    static readonly VideoDataOptions Data = new(new ClipSampler(SamplingMode.Segment, 4), new ClipTransform { Size = 32 });

    static VideoRunJob Job(string method, string checkpoint) => new(Motion.Value, method, null,
        new TrainOptions { Epochs = 1, BatchSize = 8, EvalBatchSize = 7, Lr = 1e-2, WarmupEpochs = 0, DropPath = 0, Normalization = "inception", Seed = 42 },
        new VideoBackbone(checkpoint, Inflate: false, 4, 2), Data, workers: 1);

    [Fact]
    public void Saved_adapter_evaluates_to_the_runs_test_predictions_and_merged_to_the_same()
    {
        var job = Job("lora", Base);
        var product = job.Run(CPU, null, null);
        string dir = TestFiles.TempDir();
        product.SaveAdapter(dir);
        product.Dispose();

        var info = VideoAdapter.ReadInfo(dir);
        Assert.Equal(VideoTasks.MotionClasses, info.ClassNames);
        Assert.Equal((4, 2, false), (info.Backbone.Frames, info.Backbone.Tubelet, info.Backbone.Inflate));
        Assert.Equal(("inception", 32, 7), (info.Data.Transform.Normalization.Name, info.Data.Transform.Size, info.EvalBatchSize));
        Assert.Equal(FileHashes.Sha256(Base), info.BaseSha256);

        using var classifier = VideoClassifier.Load(dir);
        var clips = classifier.Clips(Motion.Value.TestList, Motion.Value.FramesRoot);
        var evaluation = classifier.Evaluate(clips, CPU);
        Assert.Equal(product.Outcome.Top1, evaluation.Top1);
        Assert.Equal(product.Predictions.Count, evaluation.Predictions.Count);
        for (int i = 0; i < evaluation.Predictions.Count; i++)
        {
            Assert.Equal(product.Predictions[i].Predicted, evaluation.Predictions[i].Predicted);
            Assert.Equal(product.Predictions[i].Logits, evaluation.Predictions[i].Logits);   // the same log-probabilities, bit for bit
        }

        classifier.MergeAndUnload();
        Assert.DoesNotContain(classifier.Model.named_modules(), m => m.module is PeftSharp.Tuners.Methods.LoraLinear);
        var merged = classifier.Evaluate(clips, CPU);
        Assert.Equal(evaluation.Predictions.Select(p => p.Predicted), merged.Predictions.Select(p => p.Predicted));
        for (int i = 0; i < merged.Predictions.Count; i++)
            for (int c = 0; c < 10; c++)
                Assert.Equal(evaluation.Predictions[i].Logits[c], merged.Predictions[i].Logits[c], 4);
    }

    [Fact]
    public void Adapters_of_another_base_or_family_are_refused_naming_the_field()
    {
        var job = Job("bitfit", Base);
        string dir = TestFiles.TempDir();
        using (var product = job.Run(CPU, null, null)) product.SaveAdapter(dir);

        // Another base: the same architecture, other weights.
        string other = Path.Combine(TestFiles.TempDir(), "other.safetensors");
        using (var model = VideoCheckpoints.LoadVideoMae(Base).Model)
        {
            using (no_grad()) ((TorchSharp.Modules.Linear)model.head).weight!.add_(1);
            VideoCheckpoints.SaveVideoMae(other, model);
        }
        var e = Assert.Throws<PeftSharpException>(() => VideoAdapter.Load(dir, other));
        Assert.StartsWith($"{other}: not the base this adapter was trained on ({Path.Combine(dir, AdapterFiles.ConfigFile)} field 'base_model.checkpoint_sha256'", e.Message);
        using (var forced = VideoClassifier.Load(dir, other, forceBase: true)) Assert.Equal("bitfit", forced.Method);

        // The image family's loaders refuse a video adapter, and the video loader an image adapter.
        using var vit = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        var image = Assert.Throws<PeftSharpException>(() => AdapterFiles.Load(vit, dir));
        Assert.Equal($"{Path.Combine(dir, AdapterFiles.ConfigFile)}: an adapter for a VIDEO model, not for a VIT model", image.Message);
        string imageDir = TestFiles.TempDir();
        AdapterFiles.Save(PeftModel.Create(vit, "bitfit"), imageDir, TestFiles.VitCheckpoint);
        var video = Assert.Throws<PeftSharpException>(() => VideoAdapter.ReadInfo(imageDir));
        Assert.Equal($"{Path.Combine(imageDir, AdapterFiles.ConfigFile)}: an adapter for a VIT model, not for a video model (field 'base_model.kind' is 'vit')", video.Message);
    }

    static double Top1(string output, string prefix)
    {
        var m = Regex.Match(output, Regex.Escape(prefix) + @"top-1 ([0-9.]+)%");
        Assert.True(m.Success, $"no '{prefix}top-1' in:\n{output}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Cli_train_saves_an_adapter_that_eval_and_predict_read()
    {
        var task = Motion.Value;
        string work = TestFiles.TempDir(), adapter = Path.Combine(work, "adapter"), db = Path.Combine(work, "results.db");
        var train = CliRunner.Run("train", "--family", "video", "--data", task.Directory, "--method", "lora", "--checkpoint", Base,
                                  "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "7", "--lr", "1e-2", "--normalization", "inception",
                                  "--save-adapter", adapter, "--db", db, "--quiet");
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        double trained = Top1(train.Stdout, "");
        var eval = CliRunner.Run("eval", "--adapter", adapter, "--data", task.Directory);
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        Assert.Equal(trained, Top1(eval.Stdout, "video-motion test: "));
        Assert.Contains("over 20 clips", eval.Stdout);
        var merged = CliRunner.Run("eval", "--adapter", adapter, "--list", task.TestList, "--root", task.FramesRoot, "--merge");
        Assert.True(merged.ExitCode == 0, merged.Stderr);
        Assert.Equal(trained, Top1(merged.Stdout, $"{task.TestList}: "));
        Assert.Contains("lora, merged", merged.Stdout);

        var predict = CliRunner.Run("predict", "--adapter", adapter, "--top", "2", "--format", "json",
                                    Path.Combine(task.FramesRoot, "test_0000"), Path.Combine(task.FramesRoot, "test_0001"));
        Assert.True(predict.ExitCode == 0, predict.Stderr);
        var clips = System.Text.Json.Nodes.JsonNode.Parse(predict.Stdout)!.AsArray();
        Assert.Equal(2, clips.Count);
        Assert.All(clips, c => Assert.Equal(2, c!["top"]!.AsArray().Count));
        Assert.Contains(clips[0]!["top"]![0]!["class"]!.GetValue<string>(), VideoTasks.MotionClasses);
    }

    [Fact]
    public void Cli_bad_clip_lists_and_adapters_are_one_line_and_exit_2()
    {
        string root = TestFiles.TempDir();
        for (int clip = 0; clip < 2; clip++)
        {
            string folder = Directory.CreateDirectory(Path.Combine(root, $"c{clip}")).FullName;
            foreach (var f in Directory.GetFiles(Path.Combine(Motion.Value.FramesRoot, "train_0000")).Order().Take(clip == 0 ? 8 : 3))
                File.Copy(f, Path.Combine(folder, Path.GetFileName(f)));
        }
        File.WriteAllBytes(Path.Combine(root, "empty.mp4"), []);
        File.WriteAllText(Path.Combine(root, "broken.mp4"), "not a video");
        CliRunner.Result Train(string list)
        {
            File.WriteAllText(Path.Combine(root, "list.txt"), list);
            return CliRunner.Run("train", "--family", "video", "--train-list", Path.Combine(root, "list.txt"), "--root", root, "--classes", "2",
                                 "--method", "linear", "--checkpoint", Base, "--db", Path.Combine(root, "r.db"), "--quiet");
        }
        void Expect(CliRunner.Result r, string expected)
        {
            CliRunner.AssertOneLineError(r, expected);
            Assert.Equal(2, r.ExitCode);
        }
        Expect(Train("c0 8 0\nc1 3 1\n"), $"{Path.Combine(root, "c1")}: has 3 frames; the segment sampler needs at least 4");
        Expect(Train("c0 8 0\nc1 3\n"), $"list.txt:2: clip 'c1': expected 'clip_dir num_frames label' (a rawframe folder), got 2 fields (no label)");
        Expect(Train("c0 8 0\nempty.mp4 1\n"), $"{Path.Combine(root, "empty.mp4")}: zero-length video file");
        Expect(Train("c0 8 0\nbroken.mp4 1\n"), $"{Path.Combine(root, "broken.mp4")}: unreadable video");

        // An image adapter where a video one is expected is refused by the image path's own check, and a video
        // adapter on another base names the checkpoint and the field.
        string fake = Path.Combine(root, "adapter");
        Directory.CreateDirectory(fake);
        File.WriteAllText(Path.Combine(fake, AdapterFiles.ConfigFile), """{"format": "peftsharp-adapter", "method": "linear", "base_model": {"kind": "video", "video": "videomae", "frames": 4, "tubelet": 2, "checkpoint": "BASE", "checkpoint_sha256": "0123456789abcdef"}, "num_classes": 2, "class_names": ["a", "b"], "clips": {"sampling": "segment", "frames": 4, "interval": 1, "size": 32, "short_side": 32, "test_clips": 1, "test_crops": 1, "normalization": "inception"}}""".Replace("BASE", Base));
        File.WriteAllBytes(Path.Combine(fake, AdapterFiles.WeightsFile), []);
        Expect(CliRunner.Run("eval", "--adapter", fake, "--list", Path.Combine(root, "list.txt")),
               $"{Base}: not the base this adapter was trained on ({Path.Combine(fake, AdapterFiles.ConfigFile)} field 'base_model.checkpoint_sha256' is 0123456789ab…");
    }
}
