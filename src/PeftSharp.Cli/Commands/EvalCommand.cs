using System.Globalization;
using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;

namespace PeftSharp.Cli.Commands;

/// <summary>Evaluates a backbone (optionally with saved adapter files) on a split; metrics printed and stored.</summary>
public sealed class EvalCommand : ICommand
{
    public string Name => "eval";
    public string Summary => "evaluate a backbone (and adapter files) on a split: top-1, per-class, ECE, confusion";
    public IEnumerable<string> Flags => new[] { "help", "merge" };
    public string Usage => """
        peftsharp eval --data TASK_DIR [--split test] [backbone] [--adapter DIR] [--merge] [--device cpu|cuda] [--db FILE]
          With --adapter the saved method is applied to the backbone (its head included); --merge folds it into the
          weights first (mergeable methods). Per-example logits are stored in the results database.
        """;

    public int Run(CommandLine line)
    {
        var task = VtabTask.Open(line.Require("data"));
        string split = line.Get("split") ?? "test";
        var backbone = SharedOptions.Backbone(line);
        string? adapter = line.Get("adapter");
        bool merge = line.Flag("merge");
        var device = Devices.Parse(line.Get("device"));
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();

        using var model = backbone.Load(task.NumClasses, 0, out _);
        string method = "none";
        if (adapter != null)
        {
            var peft = AdapterFiles.Load(model, adapter);
            method = peft.MethodSpec;
            if (merge) peft.Merge();
        }
        if (model.Config.NumClasses != task.NumClasses)
            throw new PeftSharpException($"{adapter}: the adapter's head has {model.Config.NumClasses} classes, the task {task.NumClasses}");
        model.to(device);
        using var data = StudyProtocol.Loader(task.Split(split), model.Config.ImgSize, new TrainOptions(), shuffle: false);
        var result = Evaluator.Evaluate(model, data, device);
        var m = result.Metrics;
        var spec = new RunSpec
        {
            Stage = RunStage.Single, Dataset = task.Name, TrainSplit = "none", EvalSplit = split, Method = method,
            Lr = 0, WeightDecay = 0, Seed = 0, Epochs = 0, BatchSize = data.Options.BatchSize, ModelJson = backbone.ModelJson,
            Checkpoint = backbone.CheckpointIdentity(), TrainingJson = $"{{\"adapter\": {System.Text.Json.JsonSerializer.Serialize(adapter == null ? null : Path.GetFullPath(adapter))}, \"merged\": {(merge ? "true" : "false")}}}",
        };
        // The same evaluation of the same files is stored once.
        RunExecutor.RecordEvaluation(db, spec, result, task.Directory);
        Console.WriteLine($"{task.Name} {split}: top-1 {m.Top1:F2}% over {m.Count} images, loss {m.Loss:F4}, ECE {m.ExpectedCalibrationError:F4} ({result.ImagesPerSecond:F0} img/s)");
        Console.WriteLine("per-class top-1: " + string.Join(" ", m.PerClassAccuracy.Select((a, c) => $"{c}:{(double.IsNaN(a) ? "-" : a.ToString("F1", CultureInfo.InvariantCulture))}")));
        return 0;
    }
}
