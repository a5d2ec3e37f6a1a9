using System.Globalization;
using PeftSharp.Checkpoints;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Video;
using TorchSharp;

namespace PeftSharp.Cli.Commands;

/// <summary>The video family's train, eval and predict (reached from those commands: train --family video, and eval /
/// predict with a video adapter).</summary>
static class VideoCli
{
    public const string TrainUsage = """
        peftsharp train --family video --method ID (--data TASK_DIR | --train-list FILE [--test-list FILE] [--val-list FILE]
                        --root DIR (--classes N | --class-names FILE)) [--checkpoint FILE] [--frames 4] [--tubelet 2]
                        [--sampling segment|dense] [--interval 4 (dense)] [--size PX] [--short-side PX] [--test-clips 1]
                        [--test-crops 1] [--flip] [--epochs 4] [--batch-size 16] [--eval-batch-size 50] [--lr 1e-3]
                        [--wd 1e-4] [--warmup 1] [--seed 42] [--save-adapter DIR] [--no-resume] [--db FILE|URL]
          A video classifier: TASK_DIR has classes.txt, train.txt and test.txt (val.txt optional) listing clips
          under TASK_DIR/frames (the bench's video-tasks/* folders); or your own lists: rawframes
          'clip_dir num_frames label' or videos 'video_file label' (ffmpeg), paths under --root. The base is
          --checkpoint: an image ViT (default: the shipped backbone) inflated to --frames in tubelets of --tubelet,
          or a VideoMAE-named video checkpoint. --save-adapter writes adapter files that eval and predict read.
        """;

    public static int Train(CommandLine line)
    {
        var task = Task(line);
        string method = line.Require("method");
        var settings = SharedOptions.Settings(line);
        var protocol = Protocol(line);
        string? saveAdapter = line.Get("save-adapter");
        bool resume = !line.Flag("no-resume"), quiet = line.Flag("quiet");
        var keepWeights = SharedOptions.KeepWeights(line);
        var device = Devices.Parse(line.Get("device"));
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();
        if (saveAdapter != null) WritableFolder.Require(saveAdapter, "the adapter files");
        // Bad clips fail here, before any training: every list is read and checked against the sampler.
        foreach (var split in task.HasVal ? new[] { "train", "val", "test" } : new[] { "train", "test" }) task.Split(split, protocol.Data.Sampler, protocol.Data.Transform).CheckVideoFiles();

        var job = new VideoRunJob(task, method, settings, protocol.Train, protocol.Backbone, protocol.Data);
        var (record, saved) = TrainCommand.Execute(job, $"{task.Name} {method}", db, device, keepWeights, resume, saveAdapter, quiet);
        if (TrainCommand.FailureExit(record) is int failed) return failed;
        var o = record.Outcome!;
        Console.WriteLine($"run {record.Id}: {method} on {task.Name}: top-1 {Percent(o.Top1)}% on test ({o.TrainableParams:N0} trainable parameters, {o.TrainSeconds:F1} s, {o.ImagesPerSecond:F1} clips/s)");
        return saveAdapter == null ? 0 : TrainCommand.SaveStoredAdapter(db, record, saveAdapter, saved);
    }

    /// <summary>The base, clip and training options of a video run (what a video sweep stores beside its task, method,
    /// lrs and seeds).</summary>
    static Sweeps.VideoSweepSpec Protocol(CommandLine line)
    {
        string checkpoint = line.Get("checkpoint") ?? ShippedModels.RequireDefaultVit();
        bool inflate = !VideoCheckpoints.IsVideo(checkpoint);
        int frames = line.Int("frames", 4), tubelet = line.Int("tubelet", 2);
        if (frames < 1 || tubelet < 1 || frames % tubelet != 0) throw new PeftSharpException("frames", $"{frames} frames do not split into tubelets of {tubelet}");
        int epochs = line.Int("epochs", 4);
        var mode = ClipSampler.ParseMode(line.Get("sampling") ?? "segment");
        var spec = new Sweeps.VideoSweepSpec
        {
            Checkpoint = checkpoint, Inflate = inflate, Frames = frames, Tubelet = tubelet,
            // The interval only matters to dense sampling (segment sampling keeps ClipSampler's 1, as the bench does).
            Sampling = mode.ToString().ToLowerInvariant(), Interval = line.Int("interval", mode == SamplingMode.Dense ? 4 : 1),
            Size = line.Get("size") is null ? VideoCheckpoints.ImageSize(checkpoint, frames) : line.Int("size", 0),
            ShortSide = line.Int("short-side", 0), TestClips = line.Int("test-clips", 1), TestCrops = line.Int("test-crops", 1), Flip = line.Flag("flip"),
            Train = new TrainOptions
            {
                Epochs = epochs, BatchSize = line.Int("batch-size", 16), EvalBatchSize = line.Int("eval-batch-size", 50),
                Lr = line.Double("lr", 1e-3), WeightDecay = line.Double("wd", 1e-4), WarmupEpochs = line.Int("warmup", Math.Min(1, epochs - 1)),
                LabelSmoothing = line.Double("label-smoothing", 0), DropPath = line.Double("drop-path", 0), GradClip = line.OptionalDouble("grad-clip"),
                Seed = line.Int("seed", 42),
                Normalization = Data.Normalization.FromName(line.Get("normalization") ?? ModelCheckpoints.ReadNormalization(checkpoint) ?? "none").Name,
            }.Validate(),
        };
        return spec;
    }

    public const string SweepUsage = """
        peftsharp sweep plan --family video --db FILE|URL --data TASK_DIR|video-motion|video-appearance[,...] --method ID[,ID...]
                             [--lrs 3e-3,1e-2] [--seeds 42,43,44] [--task-root video-tasks] [--name PLAN] [video options as for train]
          Queues one video run per task × method × lr × seed (each records its val top-1, which chooses the lr, and
          its test top-1); workers ('peftsharp worker', 'sweep slurm') run them like any run. A built-in task name
          renders that task under --task-root with the bench's clip counts unless the folder is there.
        """;

    /// <summary>sweep plan --family video: the video sweeps of every task × method.</summary>
    public static int SweepPlan(CommandLine line)
    {
        string taskRoot = line.Get("task-root") ?? "video-tasks";
        var profile = VideoBenchProfile.Get("default");
        var tasks = (line.Get("data") ?? throw new PeftSharpException("data", "sweep plan --family video: give --data TASK_DIR[,...]"))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(t => !Directory.Exists(t) && VideoTasks.Names.Contains(t)
                ? VideoTasks.Ensure(t, taskRoot, profile.TrainPerClassOf(t), profile.ValPerClass, profile.TestPerClass).Directory : t).ToList();
        var methods = line.Require("method").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var settings = SharedOptions.Settings(line);
        var lrs = line.Doubles("lrs", [line.Double("lr", 1e-3)]);
        int[] seeds = line.Get("seeds") is string text
            ? text.Split(',').Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : throw new PeftSharpException("seeds", $"--seeds expects integers, got '{s}'")).ToArray()
            : [line.Int("seed", 42)];
        var protocol = Protocol(line);
        string? name = line.Get("name");
        line.Flag("quiet");
        line.Get("device");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown(maxPositional: 1);
        var sweeps = (from task in tasks from method in methods
                      select protocol with { TaskDirectory = task, Method = method, Settings = settings, Lrs = lrs, Seeds = seeds }).ToList();
        SweepCommand.PrintPlan(new Sweeps.WorkQueue(db).Plan(name, sweeps), "video sweep(s)", db);
        return 0;
    }

    /// <summary>--data TASK_DIR, or a user's --train-list/--test-list/--val-list under --root with --classes or --class-names.</summary>
    static VideoTask Task(CommandLine line)
    {
        if (line.Get("data") is string data)
        {
            if (line.Get("train-list") != null) throw new PeftSharpException("train-list", "give either a video task folder (--data) or list files (--train-list), not both");
            return VideoTask.Open(data);
        }
        string trainList = line.Get("train-list") ?? throw new PeftSharpException("data", "train --family video: give --data TASK_DIR or --train-list FILE");
        string root = line.Get("root") ?? Path.GetDirectoryName(Path.GetFullPath(trainList))!;
        IReadOnlyList<string> classes = line.Get("class-names") is string file ? VideoTask.ReadClassNames(file)
            : line.Int("classes", 0) is int n and > 0 ? Enumerable.Range(0, n).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList()
            : throw new PeftSharpException("classes", "train --family video with --train-list: give --classes N or --class-names FILE");
        return VideoTask.FromLists(trainList, line.Get("test-list"), line.Get("val-list"), root, classes);
    }

    /// <summary>eval with a video adapter: top-1/top-5 over a task's split or a list, with the adapter's clip settings.</summary>
    public static int Eval(CommandLine line)
    {
        string adapter = line.Require("adapter");
        string? data = line.Get("data"), list = line.Get("list");
        string split = line.Get("split") ?? "test";
        string? root = line.Get("root");
        bool merge = line.Flag("merge");
        int? batchSize = line.Get("batch-size") is null ? null : line.Int("batch-size", 50);
        var device = Devices.Parse(line.Get("device"));
        using var classifier = VideoClassifier.Load(adapter, line.Get("checkpoint"), line.Flag("force-base"));
        line.RejectUnknown();
        if ((data is null) == (list is null)) throw new PeftSharpException("data", "eval with a video adapter: give --data TASK_DIR (with --split) or --list FILE (with --root)");
        ClipDataset clips;
        string name;
        if (data is not null)
        {
            var task = VideoTask.Open(data);
            if (!task.Classes.SequenceEqual(classifier.ClassNames))
                throw new PeftSharpException($"{adapter}: the adapter's classes ({string.Join(", ", classifier.ClassNames.Take(6))}…) are not the task's ({string.Join(", ", task.Classes.Take(6))}…, {data})");
            clips = ClipDataset.FromList(task.ListOf(split), task.FramesRoot, classifier.NumClasses, classifier.Info.Data.Sampler, classifier.Info.Data.Transform);
            name = $"{task.Name} {split}";
        }
        else
        {
            clips = classifier.Clips(list!, root ?? Path.GetDirectoryName(Path.GetFullPath(list!))!);
            name = list!;
        }
        if (merge) classifier.MergeAndUnload();
        classifier.Model.to(device);
        var result = classifier.Evaluate(clips, device, batchSize);
        var d = classifier.Info.Data;
        Console.WriteLine($"{name}: top-1 {Percent(result.Top1)}%, top-5 {Percent(result.Top5)}% over {clips.Count} clips, loss {result.Loss.ToString("F4", CultureInfo.InvariantCulture)} " +
                          $"({classifier.Method}{(merge ? ", merged" : "")}; {d.Sampler.Frames} frames, {d.Sampler.Mode.ToString().ToLowerInvariant()} sampling, {d.Transform.Views} view{(d.Transform.Views == 1 ? "" : "s")}, from {Path.Combine(adapter, Tuners.AdapterFiles.ConfigFile)})");
        return 0;
    }

    /// <summary>predict with a video adapter: the top classes of rawframe folders and video files.</summary>
    public static int Predict(CommandLine line)
    {
        string adapter = line.Require("adapter");
        int top = line.Int("top", 5);
        string format = line.Get("format") ?? "table";
        var device = Devices.Parse(line.Get("device"));
        int? batchSize = line.Get("batch-size") is null ? null : line.Int("batch-size", 50);
        using var classifier = VideoClassifier.Load(adapter, line.Get("checkpoint"), line.Flag("force-base"));
        line.RejectUnknown(maxPositional: int.MaxValue);
        if (format is not ("table" or "json")) throw new PeftSharpException("format", $"predict with a video adapter: --format must be table or json (got '{format}')");
        if (line.Positional.Count == 0) throw new PeftSharpException("predict: name at least one clip (a rawframe folder or a video file)");
        classifier.Model.to(device);
        var predictions = classifier.Predict(line.Positional, top, device, batchSize);
        if (format == "json")
        {
            Console.WriteLine(new System.Text.Json.Nodes.JsonArray(predictions.Select(p => (System.Text.Json.Nodes.JsonNode)new System.Text.Json.Nodes.JsonObject
            {
                ["clip"] = p.Clip,
                ["top"] = new System.Text.Json.Nodes.JsonArray(p.Top.Select(s => (System.Text.Json.Nodes.JsonNode)new System.Text.Json.Nodes.JsonObject
                    { ["label"] = s.Label, ["class"] = s.Name, ["probability"] = s.Probability }).ToArray()),
            }).ToArray()).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        int width = Math.Min(60, predictions.Max(p => p.Clip.Length));
        foreach (var p in predictions)
            Console.WriteLine(p.Clip.PadRight(width) + "  " + string.Join("  ", p.Top.Select(s => $"{s.Name} {Percent(s.Probability, "F1")}%")));
        return 0;
    }

    static string Percent(double fraction, string format = "F2") => (100 * fraction).ToString(format, CultureInfo.InvariantCulture);
}
