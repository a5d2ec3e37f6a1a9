using System.Globalization;
using PeftSharp.Results;
using PeftSharp.Training;

namespace PeftSharp.Cli.Commands;

/// <summary>The study protocol on one task: grid search on train800/val200, retrain the best, report test.</summary>
public sealed class TuneCommand : ICommand
{
    public string Name => "tune";
    public string Summary => "grid-search a method on train800/val200, retrain the best on train800val200, report test";
    public IEnumerable<string> Flags => SharedOptions.Flags;
    public string Usage => """
        peftsharp tune --data TASK_DIR --method ID [backbone] [--grid study|none|key=v1,v2 ...] [--lrs 1e-3,1e-2]
                       [--wds 1e-4,1e-3] [--seeds 42,43,...] [--save-adapter DIR] [training options]
          Searches on the task's training split scored on its validation split, retrains the chosen configuration
          on both and scores it on test. Rerunning the same command skips finished runs. --save-adapter writes the
          chosen final model (the first seed's) as adapter files. To spread the runs over many workers: peftsharp sweep.
        """ + "\n" + SharedOptions.GridUsage + SharedOptions.SplitUsage + SharedOptions.Usage;

    public int Run(CommandLine line)
    {
        var spec = SharedOptions.Tune(line, line.Require("data"), line.Require("method"));
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        var keepWeights = SharedOptions.KeepWeights(line);
        string? saveAdapter = line.Get("save-adapter");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();
        if (saveAdapter != null)
        {
            if (keepWeights == KeepWeights.None) throw new PeftSharpException("tune: --save-adapter needs the final run's weights kept; leave out --keep-weights none");
            WritableFolder.Require(saveAdapter, "the adapter files");
        }

        var result = ConsoleObserver.Run(quiet, observer => new StudyProtocol(new RunExecutor(db, device, observer) { KeepWeights = keepWeights }).Tune(spec));
        Console.WriteLine($"sweep {result.SweepId}: {result.Search.Count} search runs ({result.Search.Count(r => r.Status == RunStatus.Failed)} failed)" +
                          (spec.Halving is { } halving ? $", {halving}: {result.SearchImages.ToString("N0", CultureInfo.InvariantCulture)} training images" : ""));
        if (result.Search.Count == 0 && result.Final.Count > 0)
            Console.WriteLine($"one configuration: no search, retrained on {result.Final[0].Spec.TrainSplit} directly");
        else if (result.Best == null)
        {
            Console.Error.WriteLine("tune: no search run finished; nothing to retrain");
            return 1;
        }
        else
            Console.WriteLine($"best on {result.Best.Spec.EvalSplit}: top-1 {100 * result.Best.Top1:F2}% with lr={result.Best.Spec.Lr:G3} wd={result.Best.Spec.WeightDecay:G3} {result.Best.Spec.HyperJson}");
        foreach (var r in result.Final)
            Console.WriteLine($"test top-1 (seed {r.Spec.Seed}): {(r.Top1 is double t ? (100 * t).ToString("F2", CultureInfo.InvariantCulture) + "%" : "failed: " + r.Error)}");
        if (result.Mean is double mean)
            Console.WriteLine(result.StdDev is double sd ? $"test top-1 mean {mean:F2} ± {sd:F2} over {result.TestTop1.Count} seeds" : $"test top-1 {mean:F2}");
        if (!result.Final.All(r => r.Status == RunStatus.Finished)) return 1;
        if (saveAdapter != null)
        {
            var chosen = result.Final[0];
            if (!RunArtifacts.ExportAdapter(db, chosen.Id, saveAdapter))
            {
                Console.Error.WriteLine($"peftsharp tune: {saveAdapter}: the final run {chosen.Id} has no stored weights (full fine-tuning keeps them with --keep-weights all)");
                return 2;
            }
            Console.WriteLine($"adapter of run {chosen.Id} (seed {chosen.Spec.Seed}) saved to {saveAdapter}");
        }
        return 0;
    }
}
