using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Training;
using SkiaSharp;
using static TorchSharp.torch;

namespace PeftSharp.Video;

/// <summary>The video family's benchmark settings: tasks, methods, each method's learning rates, the clip protocol.
/// The default fits about 15 minutes on a shared 2-core CPU (docs/video.md, "Measured here"): 4-frame clips in
/// tubelets of 2 (2 × 16 patch tokens + the class token: half the tokens of 8 frames, and the motion task's direction
/// is still there to learn), batch 16 for enough optimiser steps (a few hundred: the temporal adapter's zero-initialised
/// kernel needs them to leave the plateau), 4 epochs.</summary>
public sealed record VideoBenchProfile
{
    public IReadOnlyList<string> Tasks { get; init; } = VideoTasks.Names;
    public IReadOnlyList<string> Methods { get; init; } = new[] { "linear", "full", "lora", "adaptformer", "bitfit", "prefix", "st-adapter", "bapat" };
    /// <summary>The lr search: full fine-tuning moves every weight and takes smaller rates than the methods.</summary>
    public IReadOnlyList<double> Lrs { get; init; } = new[] { 3e-3, 1e-2 };
    public IReadOnlyList<double> FullLrs { get; init; } = new[] { 3e-4, 1e-3 };
    public int Epochs { get; init; } = 4;
    public int BatchSize { get; init; } = 16;
    public int Frames { get; init; } = 4;
    public int Tubelet { get; init; } = 2;
    /// <summary>Training clips per class of each task. The motion task needs more distinct clips than the appearance
    /// task: on 30 per class every method memorised the clips (training loss 0.3) at 17 % test top-1.</summary>
    public IReadOnlyDictionary<string, int> TrainPerClass { get; init; } =
        new Dictionary<string, int> { ["video-motion"] = 100, ["video-appearance"] = 30 };
    public int ValPerClass { get; init; } = 10;
    public int TestPerClass { get; init; } = 20;
    /// <summary>Temporal test views per clip (VideoMAE tests with several; 1 keeps the default profile short).</summary>
    public int TestClips { get; init; } = 1;

    public static VideoBenchProfile Get(string name) => name switch
    {
        "default" => new VideoBenchProfile(),
        "quick" => new VideoBenchProfile
        {
            Methods = new[] { "linear", "lora", "st-adapter" }, Lrs = new[] { 3e-3 }, FullLrs = new[] { 3e-4 }, Epochs = 2,
            TrainPerClass = new Dictionary<string, int> { ["video-motion"] = 30, ["video-appearance"] = 20 },
        },
        _ => throw new PeftSharpException("profile", $"unknown video profile '{name}' (quick, default)"),
    };

    public int TrainPerClassOf(string task) => TrainPerClass.TryGetValue(task, out int n) ? n : 30;

    public IReadOnlyList<double> LrsFor(string method) => method == "full" ? FullLrs : Lrs;
}

/// <summary>One method on one task: the run chosen by val top-1 among the lr search, and its stored record.</summary>
public sealed record VideoBenchCell(string Task, string Method, double Lr, RunRecord Record)
{
    JsonObject Metrics => JsonNode.Parse(Record.Outcome!.MetricsJson)!.AsObject();
    public double Top1 => Record.Outcome!.Top1;
    public double Top5 => Metrics["top5"]!.GetValue<double>();
    public double ShuffledTop1 => Metrics["shuffled_top1"]!.GetValue<double>();
    public double DataMsPerStep => Metrics["data_ms_per_step"]!.GetValue<double>();
    public double StepMs => Metrics["step_ms"]!.GetValue<double>();
    public long PeakRss => Metrics["peak_rss_bytes"]!.GetValue<long>();
    public long Params => Record.Outcome!.TrainableParams;
    public double Seconds => Record.Outcome!.TrainSeconds;
}

/// <summary>
/// `peftsharp bench --family video`: the built-in motion and appearance tasks, each method with a small lr search
/// (chosen by val top-1) on the shipped image backbone inflated to clips, every run through the results database
/// (<see cref="RunExecutor.Execute(IRunJob, string, Func{RunProduct, RunRecord, RunRecord}?)"/>: resumable, reused),
/// then the V-PETL-style table, the frame-shuffle control and a picture of test clips with predictions.
/// </summary>
public sealed class VideoBenchmark(VideoBenchProfile profile, string outDir, string checkpoint)
{
    public List<VideoBenchCell> Run(Device device, IRunObserver? observer, IProgress<string>? log = null)
    {
        Directory.CreateDirectory(outDir);
        var tasks = profile.Tasks.Select(t => VideoTasks.Ensure(t, Path.Combine(outDir, "video-tasks"), profile.TrainPerClassOf(t), profile.ValPerClass, profile.TestPerClass)).ToList();
        log?.Report($"video tasks ready under {Path.Combine(outDir, "video-tasks")}");
        using var db = ResultsDb.Open(Path.Combine(outDir, "results.db"));
        var executor = new RunExecutor(db, device, observer, Path.Combine(outDir, "checkpoints"));
        var backbone = new VideoBackbone(checkpoint, Inflate: true, profile.Frames, profile.Tubelet);
        var data = new VideoDataOptions(new ClipSampler(SamplingMode.Segment, profile.Frames),
                                        new ClipTransform { Size = 32, TestClips = profile.TestClips });
        string normalization = ModelCheckpoints.ReadNormalization(checkpoint) ?? "none";
        var cells = new List<VideoBenchCell>();
        foreach (var task in tasks)
            foreach (var method in profile.Methods)
            {
                var runs = new List<(double Lr, RunRecord Record)>();
                foreach (double lr in profile.LrsFor(method))
                {
                    var train = new TrainOptions
                    {
                        Epochs = profile.Epochs, BatchSize = profile.BatchSize, EvalBatchSize = 50, Lr = lr, WeightDecay = 1e-4,
                        WarmupEpochs = 1, DropPath = 0.0, Normalization = normalization, Seed = 42,
                    };
                    var job = new VideoRunJob(task, method, null, train, backbone, data);
                    var record = executor.Execute(job, $"{task.Name} {method} lr={lr:G2}");
                    if (record.Status == RunStatus.Finished) runs.Add((lr, record));
                }
                if (runs.Count == 0) continue;
                var best = runs.OrderByDescending(r => JsonNode.Parse(r.Record.Outcome!.MetricsJson)!["val_top1"]!.GetValue<double>()).First();
                cells.Add(new VideoBenchCell(task.Name, method, best.Lr, best.Record));
            }
        File.WriteAllText(Path.Combine(outDir, "video.md"), Markdown(cells));
        var motion = tasks.FirstOrDefault(t => t.Name == "video-motion");
        var bestMotion = cells.Where(c => c.Task == "video-motion").OrderByDescending(c => c.Top1).FirstOrDefault();
        if (motion is not null && bestMotion is not null)
            FrameStrips(motion, data, db.Predictions(bestMotion.Record.Id), bestMotion.Method, Path.Combine(outDir, "video-clips.png"));
        return cells;
    }

    /// <summary>The V-PETL-style table (top-1/top-5 per task, trainable parameters, PPT, peak memory, time) and the
    /// frame-shuffle control.</summary>
    public static string Markdown(IReadOnlyList<VideoBenchCell> cells)
    {
        var ci = CultureInfo.InvariantCulture;
        var tasks = cells.Select(c => c.Task).Distinct().ToList();
        var sb = new StringBuilder();
        sb.Append("| Method | Params (method) |");
        foreach (var t in tasks) sb.Append($" {t} top-1 / top-5 | PPT |");
        sb.Append(" Peak RSS (MiB) | Train time (s) | Data ms/step |\n|---|---:|");
        foreach (var _ in tasks) sb.Append("---:|---:|");
        sb.Append("---:|---:|---:|\n");
        foreach (var method in cells.Select(c => c.Method).Distinct())
        {
            var row = cells.Where(c => c.Method == method).ToList();
            sb.Append(ci, $"| {method} | {row[0].Params:N0} |");
            foreach (var t in tasks)
            {
                var c = row.FirstOrDefault(x => x.Task == t);
                sb.Append(c is null ? " – | – |" : string.Create(ci, $" {100 * c.Top1:F1} / {100 * c.Top5:F1} (lr {c.Lr:G2}) | {Ppt.Compute(c.Top1, c.Params):F3} |"));
            }
            sb.Append(ci, $" {row.Max(c => c.PeakRss) / 1048576.0:F0} | {row.Sum(c => c.Seconds):F0} | {row.Average(c => c.DataMsPerStep):F1} of {row.Average(c => c.StepMs):F0} |\n");
        }
        var motion = cells.Where(c => c.Task == "video-motion").ToList();
        if (motion.Count > 0)
        {
            sb.Append("\nFrame-shuffle control (video-motion test clips, each clip's sampled frames permuted; chance 10 %, 50 % when only the direction is lost):\n\n| Method | top-1 | shuffled top-1 |\n|---|---:|---:|\n");
            foreach (var c in motion) sb.Append(ci, $"| {c.Method} | {100 * c.Top1:F1} | {100 * c.ShuffledTop1:F1} |\n");
        }
        return sb.ToString();
    }

    /// <summary>A PNG of the first test clips: their sampled frames in a row, the true class and the prediction.</summary>
    static void FrameStrips(VideoTask task, VideoDataOptions data, IReadOnlyList<Prediction> predictions, string method, string path)
    {
        var test = task.Split("test", data.Sampler, data.Transform with { Normalization = Data.Normalization.None, TestClips = 1 });
        const int scale = 4, rows = 6, label = 22;
        int frames = data.Sampler.Frames, side = data.Transform.Size * scale;
        // At least wide enough for the title line (4 frames of 128 px are narrower than it).
        using var bitmap = new SKBitmap(Math.Max(frames * (side + 2), 640), rows * (side + label + 4) + 2 * label, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 14);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        canvas.DrawText($"{task.Name} test clips, {method} (the bench's best method here): true → predicted", 4, 16, font, ink);
        canvas.DrawText($"the {frames} frames the model sees (segment middles of the clip's {task.FramesPerClip})", 4, 16 + label, font, ink);
        var byIndex = predictions.ToDictionary(p => p.Index);
        for (int r = 0; r < rows && r < test.Count; r++)
        {
            int clip = r * (test.Count / rows);   // spread over the classes (the list cycles through them)
            var pixels = test.ReadTest(clip);
            int top = 2 * label + r * (side + label + 4);
            var p = byIndex.GetValueOrDefault(clip);
            string text = $"{task.Classes[test.Label(clip)]} → {(p is null ? "?" : task.Classes[p.Predicted])}";
            using var paint = new SKPaint { Color = p is not null && p.Correct ? new SKColor(0, 110, 0) : new SKColor(180, 0, 0), IsAntialias = true };
            canvas.DrawText(text, 4, top + 16, font, paint);
            for (int f = 0; f < frames; f++)
            {
                using var frame = new SKBitmap(data.Transform.Size, data.Transform.Size, SKColorType.Rgba8888, SKAlphaType.Premul);
                int plane = data.Transform.Size * data.Transform.Size;
                for (int i = 0; i < plane; i++)
                {
                    byte Channel(int c) => (byte)Math.Clamp(pixels[(c * frames + f) * plane + i] * 255, 0, 255);
                    frame.SetPixel(i % data.Transform.Size, i / data.Transform.Size, new SKColor(Channel(0), Channel(1), Channel(2)));
                }
                canvas.DrawBitmap(frame, new SKRect(f * (side + 2), top + label, f * (side + 2) + side, top + label + side));
            }
        }
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, png.ToArray());
    }
}
