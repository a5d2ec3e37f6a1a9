using PeftSharp.Dense;
using PeftSharp.Results;
using PeftSharp.Sweeps;
using PeftSharp.Training;
using PeftSharp.Tests.Dense;

namespace PeftSharp.Tests.Sweeps;

/// <summary>A dense tune request through the sweep queue on SQLite: planned, rebuilt by a worker from the stored spec
/// (the same keys), searched on val, and the best lr retrained on train+val and scored on test.</summary>
public sealed class DenseSweepTests
{
    [Fact]
    public void A_worker_runs_a_planned_dense_sweep_through_search_and_final()
    {
        string dir = TestFiles.TempDir("dense-sweep");
        var spec = new TuneSpec
        {
            TaskDirectory = DenseTestData.Small(DenseSuite.Segmentation, 6), Backbone = new BackboneSpec(null, null, TestFiles.VitCheckpoint),
            Method = "bitfit", MethodGrid = new Dictionary<string, string[]>(), Lrs = [1e-3, 3e-2], WeightDecays = [1e-4],
            Train = new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 6, DropPath = 0 }, Seeds = [42],
            Dense = new DenseSweep(64, "linear", HeadLr: 1e-2),
        };
        using var db = ResultsDb.Open(Path.Combine(dir, "results.db"));
        var planned = new WorkQueue(db).Plan("dense", [spec]);
        Assert.Equal(2, planned.Queued);

        // A fresh queue rebuilds the plan from the stored spec, as a worker on another host does.
        var queue = new WorkQueue(db);
        var summary = SweepTestKit.Drain(queue, "dense");
        Assert.Equal((3, 0), (summary.Finished, summary.Failed));   // two search runs, then the chosen lr's final run
        var runs = db.Runs().ToList();
        Assert.All(runs, r => Assert.Equal("dense-seg", r.Spec.Family));
        var search = runs.Where(r => r.Spec.Stage == RunStage.Search).ToList();
        Assert.All(search, r => Assert.Equal(("train", "val"), (r.Spec.TrainSplit, r.Spec.EvalSplit)));
        var final = Assert.Single(runs, r => r.Spec.Stage == RunStage.Final);
        Assert.Equal(("train+val", "test"), (final.Spec.TrainSplit, final.Spec.EvalSplit));
        Assert.Equal(BestConfiguration.Best(search)!.Spec.Lr, final.Spec.Lr);
        Assert.Contains("\"metric\":\"miou\"", final.Outcome!.MetricsJson);
        // The final run is the run the dense protocol names for that lr, whoever executes it.
        var plan = DenseTunePlan.Create(spec);
        int point = plan.Points.ToList().FindIndex(p => p.Lr == final.Spec.Lr);
        Assert.Equal(plan.Request(RunStage.Final, point, 42).Spec.Key, final.Key);
        Assert.All(queue.Rows("dense"), r => Assert.Equal(QueueStatus.Finished, r.Status));
    }
}
