using PeftSharp.Results;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

/// <summary>Successive halving: its rungs, that it selects what the whole grid selects when short runs rank like long
/// ones, and that a rerun reads every rung back instead of training it.</summary>
public class SuccessiveHalvingTests
{
    [Fact]
    public void Rungs_halve_the_configurations_and_double_the_budget_up_to_the_last_rung()
    {
        var rungs = new HalvingSearch(Eta: 2, TopFraction: 0.25).Rungs(8);
        Assert.Equal(new[] { (8, 0.0625), (4, 0.125), (2, 0.25) }, rungs.Select(r => (r.Configurations, r.Fraction)));
        Assert.Equal(new[] { 6, 2 }, new HalvingSearch(Eta: 3, TopFraction: 0.5).Rungs(6).Select(r => r.Configurations));   // trains 6, keeps 2; trains 2, keeps 1
        Assert.Empty(new HalvingSearch().Rungs(1));
        // A 20-epoch run over 800 images at 1/4: 5 epochs of all 800; at 1/16 of a 2-epoch run over 160: one epoch over 20.
        Assert.Equal((5, 800), new Rung(0, 1, 4, 0.25).Budget(20, 800));
        Assert.Equal((1, 20), new Rung(0, 1, 4, 0.0625).Budget(2, 160));
        Assert.Throws<PeftSharpException>(() => new HalvingSearch(Eta: 1).Rungs(4));
        Assert.Throws<PeftSharpException>(() => new HalvingSearch(TopFraction: 1.5).Rungs(4));
    }

    /// <summary>A finished search run of configuration (lr, rank) scoring <paramref name="top1"/>.</summary>
    static RunRecord Fake(double lr, int rank, double top1, int epochs) => new(
        0, "", new RunSpec
        {
            Stage = RunStage.Search, Dataset = "fake", TrainSplit = "train800", EvalSplit = "val200", Method = "lora",
            HyperJson = "{\"lora\": {\"rank\": " + rank + "}}", Lr = lr, WeightDecay = 1e-4, Seed = 42, Epochs = epochs, BatchSize = 64,
        }, new RunContext { DatasetPath = "", CodeVersion = "" }, RunStatus.Finished, new RunOutcome { Top1 = top1, TrainableParams = 0 }, DateTime.UnixEpoch, DateTime.UnixEpoch, null);

    [Fact]
    public void Halving_selects_what_the_whole_grid_selects_when_short_runs_rank_like_long_ones()
    {
        // Eight configurations (lr × rank). A configuration's val score grows with its budget towards its own ceiling;
        // at short budgets the high-lr ones lead (they learn fast), but the ranking of the top half never changes, so
        // the full grid's choice survives every rung. Points 5 (lr 1e-2, rank 4) and 7 (lr 1e-2, rank 16) tie at every
        // budget; the rule breaks the tie by the hyperparameter JSON in byte order, where {"rank":16} precedes {"rank":4}.
        double[] lrs = { 1e-3, 1e-3, 1e-3, 1e-3, 1e-2, 1e-2, 1e-2, 1e-2 };
        int[] ranks = { 1, 4, 8, 16, 1, 4, 8, 16 };
        double[] ceiling = { 0.50, 0.55, 0.52, 0.51, 0.60, 0.80, 0.70, 0.80 };
        double Score(int p, double fraction) => Math.Round(ceiling[p] * (0.5 + 0.5 * fraction) + (lrs[p] > 5e-3 ? 0.1 * (1 - fraction) : 0), 6);

        var grid = Enumerable.Range(0, 8).Select(p => Fake(lrs[p], ranks[p], Score(p, 1), 100)).ToList();
        var gridChoice = BestConfiguration.Best(grid)!;
        Assert.Equal((1e-2, 16), (gridChoice.Spec.Lr, ranks[grid.IndexOf(gridChoice)]));   // the tie of 5 and 7 goes to {"rank": 16} (byte order)

        var calls = new List<(int Point, int Rung)>();
        var (runs, chosen, chosenRun) = new HalvingSearch(Eta: 2, TopFraction: 0.25).Select(8, (p, rung) =>
        {
            calls.Add((p, rung.Index));
            return Fake(lrs[p], ranks[p], Score(p, rung.Fraction), (int)(100 * rung.Fraction));
        });
        Assert.Equal(grid.IndexOf(gridChoice), chosen);
        Assert.Equal(Score(7, 0.25), chosenRun!.Top1);
        // Rung 1 trains all 8; rung 2 the best 4 (the lr 1e-2 ones); rung 3 the best 2 (ranks 4 and 16).
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 5, 7 }, calls.Select(c => c.Point));
        Assert.Equal(14, runs.Count);
    }

    [Fact]
    public void A_failed_rung_leaves_the_others_and_a_rung_with_nothing_finished_chooses_nothing()
    {
        var failed = Fake(1e-3, 1, 0.9, 1) with { Status = RunStatus.Failed, Outcome = null };
        var (_, chosen, _) = new HalvingSearch().Select(2, (p, _) => p == 0 ? failed : Fake(1e-2, 1, 0.1, 1));
        Assert.Equal(1, chosen);
        var (runs, none, noneRun) = new HalvingSearch().Select(2, (_, _) => failed);
        Assert.Equal((2, (int?)null, (RunRecord?)null), (runs.Count, none, noneRun));
    }

    sealed class Counter : IRunObserver
    {
        public int Started, Skipped;
        public void RunStarting(RunSpec spec, string label) => Started++;
        public void RunSkipped(RunRecord finished, string label) => Skipped++;
        public void Training(TrainProgress progress) { }
        public void RunFinished(RunRecord record, string label) { }
        public void RunFailed(RunSpec spec, string label, string error) { }
    }

    [Fact]
    public void A_halving_tune_stores_its_rungs_as_search_runs_and_a_rerun_trains_nothing()
    {
        string db = Path.Combine(TestFiles.TempDir(), "results.db");
        var spec = new TuneSpec
        {
            TaskDirectory = TinyVtab.Create(), Backbone = new BackboneSpec(null, null, TinyVtab.Backbone), Method = "lora",
            MethodGrid = new Dictionary<string, string[]> { ["rank"] = new[] { "2", "4" } }, Lrs = new[] { 1e-3, 1e-2 }, WeightDecays = new[] { 1e-4 },
            Train = new TrainOptions { Epochs = 4, WarmupEpochs = 0, BatchSize = 16 }, Halving = new HalvingSearch(Eta: 2, TopFraction: 0.5),
        };
        var first = new Counter();
        TuneResult result;
        using (var results = ResultsDb.Open(db))
            result = new StudyProtocol(new RunExecutor(results, CPU, first)).Tune(spec);
        // 4 points: rung 1 trains 4 for 1 epoch (1/4 of the budget), rung 2 the best 2 for 2 epochs, then one final.
        Assert.Equal(new[] { 1, 1, 1, 1, 2, 2 }, result.Search.Select(r => r.Spec.Epochs));
        Assert.Equal(new[] { "search rung 1/2", "search rung 1/2", "search rung 1/2", "search rung 1/2", "search rung 2/2", "search rung 2/2" },
                     result.Search.Select(RunExport.StageOf));
        Assert.Equal(48L * (4 * 1 + 2 * 2), result.SearchImages);   // 48 training images
        var final = Assert.Single(result.Final);
        Assert.Equal((result.Best!.Spec.Lr, result.Best.Spec.HyperJson, 4), (final.Spec.Lr, final.Spec.HyperJson, final.Spec.Epochs));
        Assert.Same(result.Best, result.Search.Skip(4).OrderBy(r => r, Comparer<RunRecord>.Create(BestConfiguration.Compare)).First());
        Assert.Equal(7, first.Started);

        var again = new Counter();
        using (var results = ResultsDb.Open(db))
        {
            var rerun = new StudyProtocol(new RunExecutor(results, CPU, again)).Tune(spec);
            Assert.Equal(final.Id, rerun.Final[0].Id);
            Assert.Equal(7, results.Runs().Count);
        }
        Assert.Equal((0, 7), (again.Started, again.Skipped));
    }
}
