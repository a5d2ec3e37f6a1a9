using PeftSharp.Interop;
using System.Globalization;
using System.Text.Json.Nodes;
using PeftSharp.Evaluation;
using PeftSharp.Inference;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;

namespace PeftSharp.Cli.Commands;

/// <summary>Evaluates a trained model (a checkpoint, or a base with adapter files) on a task's split with the
/// preprocessing it records; metrics printed with class names and stored.</summary>
public sealed class EvalCommand : ICommand
{
    public string Name => "eval";
    public string Summary => "evaluate a model (and adapter files) on a split: top-1, per-class, ECE, confusion matrix";
    public IEnumerable<string> Flags => new[] { "help", "merge", "force-base" };
    public string Usage => """
        peftsharp eval --data TASK_DIR [--split NAME] [--checkpoint FILE] [--adapter DIR] [--merge] [--force-base]
                       [--normalization NAME] [--batch-size N (64)] [--precision fp32|bf16|auto] [--device cpu|cuda] [--db FILE|URL]
          Evaluates on the task's test split by default. The image size, normalisation and class names come from
          what the adapter (or a merged checkpoint) records, so the top-1 is the one training reported; a
          --normalization that disagrees with the record is an error. Without --checkpoint the adapter's recorded
          base is used (else the shipped backbone); an adapter is refused on a base other than its own unless
          --force-base. --merge folds the adapter into the weights first (mergeable methods).
        peftsharp eval --adapter VIDEO_ADAPTER_DIR (--data TASK_DIR [--split test] | --list FILE [--root DIR]) [--merge]
                       [--checkpoint FILE] [--force-base] [--batch-size N]
          A video adapter (from train --family video) is evaluated with the frames, sampling, crop, views,
          normalisation and classes it records: top-1/top-5 over the clips.
        """ + "\n" + DenseCli.EvalUsage + "\n" + SharedOptions.SplitUsage;

    public int Run(CommandLine line)
    {
        // A video adapter says so in its config: the clips, sampling and classes come from it.
        if (line.Get("adapter") is string adapter && Tuners.AdapterFiles.ReadKind(adapter) == Video.VideoAdapter.Kind) return VideoCli.Eval(line);
        // A dense adapter, a built-in dense task or a COCO/mask folder: mIoU or box AP.
        if (DenseCli.Applies(line, eval: true)) return DenseCli.Eval(line);
        var task = SharedOptions.Task(line);
        string split = line.Get("split") ?? task.TestName;
        var source = ClassifierOptions(line);
        bool merge = line.Flag("merge");
        int batchSize = line.Int("batch-size", 64);
        var device = Devices.Parse(line.Get("device"));
        using var db = SharedOptions.OpenDb(line);
        if (batchSize < 1) throw new PeftSharpException($"eval: --batch-size must be at least 1 (got {batchSize})");

        var data = task.Split(split);
        using var classifier = Classifier.Load(source);
        var precision = SharedOptions.Precision(line, () => classifier.Model.Config, batchSize);
        line.RejectUnknown();
        string model = source.Adapter ?? classifier.Checkpoint;
        if (classifier.NumClasses != task.NumClasses)
            throw new PeftSharpException($"{model}: the model's head has {classifier.NumClasses} classes, the task {task.NumClasses} ({task.Directory})");
        if (classifier.ClassNames != null && task.ClassNames != null && !classifier.ClassNames.SequenceEqual(task.ClassNames))
            throw new PeftSharpException($"{model}: the model's classes ({string.Join(", ", classifier.ClassNames.Take(8))}…) are not the task's ({string.Join(", ", task.ClassNames.Take(8))}…)");
        if (merge) classifier.MergeAndUnload();
        classifier.Model.to(device);
        using var loader = classifier.Loader(data, batchSize);
        var result = Evaluator.Evaluate(classifier.Model, loader, device, precision: precision);
        var m = result.Metrics;
        var spec = RunSpecs.Evaluation(task.Name, split, classifier.Method, batchSize, new JsonObject { ["config"] = classifier.Model.Config.ToJson() }.ToJsonString(),
                                       PeftSharp.Checkpoints.CheckpointIdentity.Of(classifier.Checkpoint), classifier.EvaluationIdentity(merge, precision, data, task));
        // The same evaluation of the same files is stored once.
        var record = RunExecutor.RecordEvaluation(db, spec, result, task.Directory);
        Console.WriteLine($"{task.Name} {split}: top-1 {m.Top1.ToString("F2", CultureInfo.InvariantCulture)}% over {m.Count} images, loss {m.Loss:F4}, ECE {m.ExpectedCalibrationError:F4} ({result.ImagesPerSecond:F0} img/s; {classifier.Preprocessing} from {classifier.PreprocessingSource}; run {record.Id})");
        Console.Write(ClassTables.PerClass(m, classifier.ClassName));
        Console.Write(ClassTables.Confusion(m, classifier.ClassName));
        return 0;
    }

    /// <summary>The model options eval and predict share.</summary>
    internal static ClassifierSource ClassifierOptions(CommandLine line) => new()
    {
        Checkpoint = line.Get("checkpoint"), Adapter = line.Get("adapter"), Preset = line.Get("model"), ConfigJson = line.Get("config"),
        Normalization = line.Get("normalization"), ForceBase = line.Flag("force-base"),
    };

}

/// <summary>Per-class accuracy and the confusion matrix as text, with class names.</summary>
static class ClassTables
{
    /// <summary>Matrices wider than this many classes are summarised by their most frequent confusions.</summary>
    const int MaxMatrixClasses = 20;

    public static string PerClass(Metrics m, Func<int, string> name)
    {
        int classes = m.PerClassAccuracy.Length;
        int width = Math.Max(5, Enumerable.Range(0, classes).Max(c => name(c).Length));
        var text = new System.Text.StringBuilder($"{"class".PadRight(width)}  images   top-1\n");
        for (int c = 0; c < classes; c++)
        {
            long count = Enumerable.Range(0, classes).Sum(p => m.Confusion[c, p]);
            string accuracy = double.IsNaN(m.PerClassAccuracy[c]) ? "-" : m.PerClassAccuracy[c].ToString("F1", CultureInfo.InvariantCulture) + "%";
            text.Append($"{name(c).PadRight(width)}  {count,6}  {accuracy,6}\n");
        }
        return text.ToString();
    }

    public static string Confusion(Metrics m, Func<int, string> name)
    {
        int classes = m.PerClassAccuracy.Length;
        var text = new System.Text.StringBuilder();
        if (classes > MaxMatrixClasses)
        {
            var top = (from t in Enumerable.Range(0, classes) from p in Enumerable.Range(0, classes)
                       where t != p && m.Confusion[t, p] > 0 orderby m.Confusion[t, p] descending, t, p select (t, p)).Take(10).ToList();
            text.Append($"most frequent confusions (true -> predicted), of {classes} classes:\n");
            foreach (var (t, p) in top) text.Append($"  {name(t)} -> {name(p)}: {m.Confusion[t, p]}\n");
            return text.ToString();
        }
        // Columns are numbered; the row labels carry the names.
        int width = Math.Max(4, Enumerable.Range(0, classes).Max(c => name(c).Length + 4));
        int cell = Math.Max(4, Enumerable.Range(0, classes).SelectMany(t => Enumerable.Range(0, classes).Select(p => m.Confusion[t, p].ToString(CultureInfo.InvariantCulture).Length)).Max() + 1);
        text.Append("confusion matrix (rows: true class, columns: predicted class):\n");
        text.Append("".PadRight(width)).Append(string.Concat(Enumerable.Range(0, classes).Select(c => $"[{c}]".PadLeft(cell)))).Append('\n');
        for (int t = 0; t < classes; t++)
            text.Append($"[{t}] {name(t)}".PadRight(width)).Append(string.Concat(Enumerable.Range(0, classes).Select(p => m.Confusion[t, p].ToString(CultureInfo.InvariantCulture).PadLeft(cell)))).Append('\n');
        return text.ToString();
    }
}
