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
    public IEnumerable<string> Flags => SharedOptions.Flags.Append("no-resume").Append("flip");
    public string Usage => """
        peftsharp train --data TASK_DIR --method ID [backbone] [--train-split NAME] [--eval-split NAME]
                        [--save-adapter DIR] [--no-resume] [training options]
          Trains on the task's training split (train+val; VTAB-1K: train800val200) and evaluates on its test split.
          An interrupted run resumes from its last finished epoch (unless --no-resume); an identical finished run
          on the same images is not retrained. --save-adapter writes the adapter files (with the base checkpoint,
          preprocessing and class names), which eval, predict and merge read.
        """ + "\n" + SharedOptions.SplitUsage + SharedOptions.Usage + VideoCli.TrainUsage + "\n" + DenseCli.TrainUsage;

    public int Run(CommandLine line)
    {
        // A built-in dense task or a COCO/mask folder is dense without --family dense.
        switch (line.Get("family") ?? (DenseCli.Applies(line) ? "dense" : "classification"))
        {
            case "video": return VideoCli.Train(line);
            case "dense": return DenseCli.Train(line);
            case "classification": break;
            case var other: throw new PeftSharpException("family", $"train: unknown family '{other}' (classification, video, dense)");
        }
        var task = SharedOptions.Task(line);
        string method = line.Require("method");
        string? trainSplit = line.Get("train-split"), evalSplit = line.Get("eval-split");
        var backbone = SharedOptions.Backbone(line);
        var train = SharedOptions.Train(line, backbone);
        var settings = SharedOptions.Settings(line);
        string? saveAdapter = line.Get("save-adapter");
        bool resume = !line.Flag("no-resume");
        var keepWeights = SharedOptions.KeepWeights(line);
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();
        if (saveAdapter != null) WritableFolder.Require(saveAdapter, "the adapter files");

        using var run = SingleRun.Create(task, method, settings, train, backbone, trainSplit, evalSplit);
        var spec = run.Request.Spec;
        var (record, saved) = Execute(run.Request, $"{task.Name} {method}", db, device, keepWeights, resume, saveAdapter, quiet);
        if (FailureExit(record) is int failed) return failed;
        Console.WriteLine($"run {record.Id}: {method} on {task.Name}: top-1 {100 * record.Top1:F2}% on {spec.EvalSplit} ({record.Outcome!.TrainableParams:N0} trainable parameters, {record.Outcome.TrainSeconds:F1} s, {record.Outcome.ImagesPerSecond:F0} img/s)");
        return saveAdapter == null ? 0 : SaveStoredAdapter(db, record, saveAdapter, saved);
    }

    /// <summary>One run of any task family for <c>train</c>: reused from the store or trained (resuming an interrupted
    /// attempt unless <paramref name="resume"/> is false), its adapter saved to <paramref name="saveAdapter"/> when this
    /// process trained it (<c>Saved</c>).</summary>
    internal static (RunRecord Record, bool Saved) Execute(IRunJob job, string label, IResultsStore db, TorchSharp.torch.Device device, KeepWeights keepWeights,
                                                           bool resume, string? saveAdapter, bool quiet)
    {
        bool saved = false;
        var record = ConsoleObserver.Run(quiet, observer =>
            new RunExecutor(db, device, observer) { KeepWeights = keepWeights, Resume = resume }.Execute(job, label, (product, r) =>
            {
                if (saveAdapter != null)
                {
                    product.SaveAdapter(saveAdapter);
                    saved = true;
                }
                return r;
            }));
        return (record, saved);
    }

    /// <summary>Null for a finished run; otherwise its error on stderr and the exit code: 2 for a diverged run (the
    /// settings' fault, the lr), 1 for anything else.</summary>
    internal static int? FailureExit(RunRecord record)
    {
        if (record.Status == RunStatus.Finished) return null;
        Console.Error.WriteLine($"peftsharp train: run failed: {record.Error}");
        return record.Error?.StartsWith(OptimizerSteps.DivergedMessage, StringComparison.Ordinal) == true ? 2 : 1;
    }

    /// <summary>Where <c>--save-adapter</c> was given: a run trained now saved it already; a run already in the database
    /// exports its stored adapter, or there is none to save (exit 2).</summary>
    internal static int SaveStoredAdapter(IResultsStore db, RunRecord record, string saveAdapter, bool saved)
    {
        if (!saved && !RunArtifacts.ExportAdapter(db, record.Id, saveAdapter))
        {
            Console.Error.WriteLine($"peftsharp train: {saveAdapter}: run {record.Id} is already in {db.Location} without stored weights (kept with --keep-weights), so there is no adapter to save; rerun with another --db");
            return 2;
        }
        Console.WriteLine($"adapter saved to {saveAdapter}{(saved ? "" : $" (from run {record.Id} in {db.Location})")}");
        return 0;
    }
}
