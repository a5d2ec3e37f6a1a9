using PeftSharp.Data;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;

namespace PeftSharp.Cli.Commands;

/// <summary>One training run on a task's split, evaluated on another, stored in the results database.</summary>
public sealed class TrainCommand : ICommand
{
    public string Name => "train";
    public string Summary => "train one configuration and evaluate it (stored in the results database)";
    public IEnumerable<string> Flags => SharedOptions.Flags.Append("no-resume");
    public string Usage => """
        peftsharp train --data TASK_DIR --method ID [backbone] [--train-split train800val200] [--eval-split test]
                        [--save-adapter DIR] [--no-resume] [training options]
          Trains on one split of a VTAB-1K task folder and evaluates on another. An interrupted run resumes from
          its last finished epoch (unless --no-resume); an identical finished run is not retrained.
        """ + "\n" + SharedOptions.Usage;

    static RunRecord Execute(RunExecutor executor, bool resume, RunRequest request, string label,
                             Func<PeftModel, Evaluation.EvaluationResult, RunRecord, RunRecord> after)
    {
        if (!resume) new TrainCheckpoint(Path.Combine(executor.CheckpointRoot, request.Spec.Key)).Delete();
        return executor.Execute(request, label, after);
    }

    public int Run(CommandLine line)
    {
        var task = VtabTask.Open(line.Require("data"));
        string method = line.Require("method");
        string trainSplit = line.Get("train-split") ?? "train800val200", evalSplit = line.Get("eval-split") ?? "test";
        var backbone = SharedOptions.Backbone(line);
        var train = SharedOptions.Train(line);
        var settings = SharedOptions.Settings(line);
        string? saveAdapter = line.Get("save-adapter");
        bool resume = !line.Flag("no-resume");
        var keepWeights = SharedOptions.KeepWeights(line);
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();

        int size = backbone.ImageSize();
        using var trainData = StudyProtocol.Loader(task.Split(trainSplit), size, train, shuffle: true);
        using var evalData = StudyProtocol.Loader(task.Split(evalSplit), size, train, shuffle: false);
        var spec = new RunSpec
        {
            Stage = RunStage.Single, Dataset = task.Name, TrainSplit = trainSplit, EvalSplit = evalSplit, Method = method,
            HyperJson = TunerRegistry.ResolveHypers(method, settings).ToJsonString(), Lr = train.Lr, WeightDecay = train.WeightDecay,
            Seed = train.Seed, Epochs = train.Epochs, BatchSize = train.BatchSize, TrainingJson = StudyProtocol.TrainingJson(train),
            ModelJson = backbone.ModelJson, Checkpoint = backbone.CheckpointIdentity(),
        };
        var record = ConsoleObserver.Run(quiet, observer => Execute(new RunExecutor(db, device, observer) { KeepWeights = keepWeights }, resume,
            new RunRequest(spec, backbone, settings, train, trainData, evalData, task.NumClasses, task.Directory),
            $"{task.Name} {method}", (peft, _, r) =>
            {
                if (saveAdapter != null) AdapterFiles.Save(peft, saveAdapter, backbone.Checkpoint);
                return r;
            }));
        if (record.Status != RunStatus.Finished)
        {
            Console.Error.WriteLine($"peftsharp train: run failed: {record.Error}");
            return 1;
        }
        Console.WriteLine($"run {record.Id}: {method} on {task.Name}: top-1 {100 * record.Top1:F2}% on {evalSplit} ({record.Outcome!.TrainableParams:N0} trainable parameters, {record.Outcome.TrainSeconds:F1} s, {record.Outcome.ImagesPerSecond:F0} img/s)");
        if (saveAdapter != null && File.Exists(Path.Combine(saveAdapter, AdapterFiles.ConfigFile))) Console.WriteLine($"adapter saved to {saveAdapter}");
        return 0;
    }
}
