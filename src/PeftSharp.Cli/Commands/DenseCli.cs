using System.Globalization;
using System.Text.Json.Nodes;
using PeftSharp.Dense;
using PeftSharp.Results;
using PeftSharp.Training;
using TorchSharp;

namespace PeftSharp.Cli.Commands;

/// <summary>train and eval on dense tasks (docs/dense.md): a built-in task (--task) or a user's COCO / mask folder
/// (--data); the run goes through the results database like any run, and its adapter folder holds the method, the head,
/// the input size, normalisation and class names, so eval scores it exactly as training did.</summary>
static class DenseCli
{
    public const string DefaultSuiteDir = "peftsharp-dense-suite";
    public const int DefaultImageSize = 64;

    public const string TrainUsage = """
        peftsharp train --task glyphs-seg|glyphs-det|garments-seg|digits-det [--suite-dir DIR] --method ID [backbone] [training options]
        peftsharp train --data DENSE_DIR --method ID [--image-size N (64)] [--head uper|linear] [--head-lr X (the lr)] [--train-split NAME (train)]
                        [--eval-split NAME (test)] [--save-adapter DIR] [--no-resume] [backbone] [training options]
          Dense prediction (docs/dense.md): DENSE_DIR is a segmentation folder (classes.txt, images/<split>/,
          annotations/<split>/*.png of class indices, 255 = ignore) or a COCO folder (annotations/instances_<split>.json,
          <split>/ images); --task materialises a built-in task under --suite-dir (default ./peftsharp-dense-suite).
          The backbone takes the method, the head (UperNet-lite or linear for segmentation, FCOS for detection) always
          trains (at --head-lr if given); the score is mIoU or COCO box AP on the eval split. --save-adapter writes the method, the head, the
          input size, normalisation and class names, which eval reads.
        """;

    public const string EvalUsage = """
        peftsharp eval --adapter DENSE_ADAPTER_DIR (--data DENSE_DIR | --task NAME) [--split NAME (test)] [--merge]
                       [--checkpoint FILE] [--force-base] [--batch-size N (64)] [--device cpu|cuda]
          A dense adapter is scored with the input size, normalisation and classes it records: mIoU, aAcc and
          per-class IoU (segmentation) or COCO box AP, AP50, AP75, APs/m/l and AR (detection).
        """;

    /// <summary>A dense invocation: --task, or --data naming a dense folder, or (eval) a dense adapter.</summary>
    public static bool Applies(CommandLine line, bool eval = false)
    {
        if (line.Get("task") != null) return true;
        if (line.Get("data") is string data && Directory.Exists(data) && (SegmentationFolder.Looks(data) || CocoDataset.Looks(data))) return true;
        return eval && line.Get("adapter") is string adapter && DenseAdapter.Looks(adapter);
    }

    static (DenseTask Task, DenseTaskInfo? BuiltIn) OpenTask(CommandLine line)
    {
        string? name = line.Get("task"), data = line.Get("data"), suiteDir = line.Get("suite-dir");
        if (name != null && data != null) throw new PeftSharpException($"{line.Verb}: give --task (a built-in dense task) or --data (a folder), not both");
        if (name == null)
        {
            if (suiteDir != null) throw new PeftSharpException($"{line.Verb}: --suite-dir is where --task materialises a built-in task; it has no meaning with --data");
            return (DenseTask.Open(data ?? throw new PeftSharpException($"{line.Verb}: missing required option --data (or --task)")), null);
        }
        // The suite's classification tasks are folders to --data, not --task names: say how to get one.
        if (PeftSharp.Suite.MiniVtab.Tasks.Any(t => t.Name == name))
            throw new PeftSharpException("task", $"'{name}' is one of the built-in image-classification tasks, which train from a folder: " +
                                                 $"peftsharp suite materialize --out DIR --tasks {name}, then {line.Verb} --data DIR/{name} " +
                                                 $"(--task names the dense tasks: {string.Join(", ", DenseSuite.Tasks.Select(t => t.Name))})");
        var info = DenseSuite.Task(name);
        return (DenseTask.Open(DenseSuite.Materialize(suiteDir ?? DefaultSuiteDir, info)), info);
    }

    public static int Train(CommandLine line)
    {
        var (task, builtIn) = OpenTask(line);
        string method = line.Require("method");
        string trainSplit = line.Get("train-split") ?? "train", evalSplit = line.Get("eval-split") ?? "test";
        var backbone = SharedOptions.Backbone(line);
        var train = SharedOptions.Train(line, backbone);
        var settings = SharedOptions.Settings(line);
        int imageSize = line.Int("image-size", builtIn?.ImageSize ?? DefaultImageSize);
        string head = line.Get("head") ?? "uper";
        double? headLr = line.OptionalDouble("head-lr");
        string? saveAdapter = line.Get("save-adapter");
        bool resume = !line.Flag("no-resume");
        var keepWeights = SharedOptions.KeepWeights(line);
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();
        // Options the dense trainer has no use for are refused rather than ignored.
        if (train.Augment) throw new PeftSharpException("augment", "dense runs have no augmentation (boxes and masks would have to move with the pixels)");
        if (train.LabelSmoothing > 0) throw new PeftSharpException("label_smoothing", "dense runs have no label smoothing");
        if (train.Precision != Precision.Float32) throw new PeftSharpException("precision", "dense runs train in fp32");
        if (train.GradCheckpointing) throw new PeftSharpException("grad_checkpointing", "dense runs do not checkpoint blocks");
        if (task.Kind == DenseKind.Detection && line.Get("head") != null && head != "fcos")
            throw new PeftSharpException("head", $"detection has one head, fcos (got '{head}')");
        if (saveAdapter != null) WritableFolder.Require(saveAdapter, "the adapter files");
        // Every split is read and checked before anything trains: bad input is one line naming the file and field.
        foreach (var split in trainSplit.Split('+').Append(evalSplit).Distinct()) task.Split(split, imageSize);

        var job = DenseRunRequest.Create(task, method, settings, train, backbone, trainSplit, evalSplit, imageSize, task.Kind == DenseKind.Segmentation ? head : "uper", headLr: headLr);
        var (record, saved) = TrainCommand.Execute(job, $"{task.Name} {method}", db, device, keepWeights, resume, saveAdapter, quiet);
        if (TrainCommand.FailureExit(record) is int failed) return failed;
        var metrics = JsonNode.Parse(record.Outcome!.MetricsJson)!.AsObject();
        Console.WriteLine($"run {record.Id}: {method} on {task.Name}: {Headline(metrics, record.Top1 ?? 0)} on {evalSplit} " +
                          $"({record.Outcome.TrainableParams:N0} trainable parameters in the backbone + {metrics["head_params"]} in the head, {record.Outcome.TrainSeconds:F1} s)");
        return saveAdapter == null ? 0 : TrainCommand.SaveStoredAdapter(db, record, saveAdapter, saved);
    }

    public static int Eval(CommandLine line)
    {
        string adapter = line.Require("adapter");
        var (task, _) = OpenTask(line);
        string split = line.Get("split") ?? "test";
        string? checkpoint = line.Get("checkpoint");
        bool merge = line.Flag("merge"), forceBase = line.Flag("force-base");
        int batchSize = line.Int("batch-size", 64);
        var device = Devices.Parse(line.Get("device"));
        line.RejectUnknown();
        if (batchSize < 1) throw new PeftSharpException($"eval: --batch-size must be at least 1 (got {batchSize})");

        var info = DenseAdapter.ReadInfo(adapter);
        if (info.Kind != task.Kind)
            throw new PeftSharpException($"{Path.Combine(adapter, DenseAdapter.ConfigFile)}: a {info.Family} adapter, but {task.Directory} is a {task.Family} task");
        var data = task.Split(split, info.ImageSize);
        if (!data.ClassNames.SequenceEqual(info.ClassNames))
            throw new PeftSharpException($"{Path.Combine(adapter, DenseAdapter.ConfigFile)}: the model's classes ({string.Join(", ", info.ClassNames.Take(8))}…) are not the task's ({string.Join(", ", data.ClassNames.Take(8))}…)");
        var (model, peft, _) = DenseAdapter.Load(adapter, checkpoint, forceBase);
        using (model)
        {
            if (merge) peft.MergeAndUnload();
            model.to(device);
            var e = DenseTrainer.Evaluate(model, data, info.Normalization, device, batchSize);
            Console.WriteLine($"{task.Name} {split}: {Headline(e.Metrics, e.Primary)} over {data.Count} images ({data.Count / Math.Max(e.Seconds, 1e-9):F0} img/s; {info.ImageSize} px, {info.Normalization.Name} normalisation{(merge ? ", merged" : "")})");
            Console.Write(Details(e.Metrics));
        }
        return 0;
    }

    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>"mIoU 42.17% (aAcc 91.30%)" or "box AP 31.20 (AP50 55.10, AP75 30.02)": the primary metric as training printed it.</summary>
    static string Headline(JsonObject m, double primary) => m["metric"]?.GetValue<string>() == "miou"
        ? $"mIoU {(100 * primary).ToString("F2", Inv)}% (aAcc {(100 * m["aacc"]!.GetValue<double>()).ToString("F2", Inv)}%)"
        : $"box AP {(100 * primary).ToString("F2", Inv)} (AP50 {Percent(m["ap50"])}, AP75 {Percent(m["ap75"])})";

    static string Percent(JsonNode? v) => v?.GetValue<double>() is double d && d >= 0 ? (100 * d).ToString("F2", Inv) : "-";

    static string Details(JsonObject m)
    {
        var text = new System.Text.StringBuilder();
        if (m["class_iou"] is JsonObject iou)
        {
            int width = Math.Max(5, iou.Max(kv => kv.Key.Length));
            text.Append($"{"class".PadRight(width)}     IoU\n");
            foreach (var (name, v) in iou)
                text.Append($"{name.PadRight(width)}  {(v is null ? "-" : (100 * v.GetValue<double>()).ToString("F2", Inv) + "%"),6}\n");
            return text.ToString();
        }
        foreach (var (key, label) in new[] { ("aps", "APs"), ("apm", "APm"), ("apl", "APl"), ("ar1", "AR@1"), ("ar10", "AR@10"), ("ar100", "AR@100") })
            text.Append($"{label,-7} {Percent(m[key])}\n");
        return text.ToString();
    }
}
