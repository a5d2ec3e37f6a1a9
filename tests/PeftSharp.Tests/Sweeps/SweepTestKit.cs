using PeftSharp.Results;
using PeftSharp.Sweeps;
using PeftSharp.Tests.Training;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Sweeps;

/// <summary>Tiny sweeps for the queue tests: the tiny VTAB task, the tiny backbone, one epoch.</summary>
internal static class SweepTestKit
{
    static readonly Lazy<string> SharedTask = new(() => TinyVtab.Create());
    public static string Task => SharedTask.Value;

    public static TuneSpec Spec(string method, double[] lrs, double[]? wds = null, int[]? seeds = null) => new()
    {
        TaskDirectory = Task, Backbone = new BackboneSpec(null, null, TinyVtab.Backbone), Method = method,
        MethodGrid = new Dictionary<string, string[]>(), Lrs = lrs, WeightDecays = wds ?? new[] { 1e-4 },
        Train = new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 16 }, Seeds = seeds ?? new[] { 42 },
    };

    /// <summary>Runs in-process workers one after another until the queue is drained.</summary>
    public static WorkerSummary Drain(WorkQueue queue, string? plan = null, string worker = "test-worker", int? maxRuns = null) =>
        new SweepWorker(queue, CPU, new WorkerOptions { Plan = plan, WorkerId = worker, MaxRuns = maxRuns, Poll = TimeSpan.FromMilliseconds(100) }).Run();

    /// <summary>The same requests through the single-process protocol: the reference a distributed sweep must equal.</summary>
    public static Dictionary<string, double?> TuneInProcess(IEnumerable<TuneSpec> specs)
    {
        using var db = ResultsDb.Open(Path.Combine(TestFiles.TempDir("tune-reference"), "results.db"));
        var protocol = new StudyProtocol(new RunExecutor(db, CPU));
        foreach (var spec in specs) protocol.Tune(spec);
        return db.Runs().Where(r => r.Status == RunStatus.Finished).ToDictionary(r => r.Key, r => r.Top1);
    }
}
