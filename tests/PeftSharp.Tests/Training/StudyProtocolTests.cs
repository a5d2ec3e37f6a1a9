using Microsoft.Data.Sqlite;
using PeftSharp.Results;
using PeftSharp.Tests.Cli;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

public class StudyProtocolTests
{
    static readonly Lazy<string> Task = new(() => TinyVtab.Create());

    static TuneSpec Spec(string method, Dictionary<string, string[]>? grid = null) => new()
    {
        TaskDirectory = Task.Value, Backbone = new BackboneSpec(null, null, TinyVtab.Backbone), Method = method,
        MethodGrid = grid ?? new Dictionary<string, string[]>(), Lrs = new[] { 1e-3, 1e-2 }, WeightDecays = new[] { 1e-4 },
        Train = new TrainOptions { Epochs = 2, WarmupEpochs = 1, BatchSize = 16, DropPath = 0.1 },
    };

    sealed class Counter : IRunObserver
    {
        public int Started, Skipped, Finished, Failed;
        public void RunStarting(RunSpec spec, string label) => Started++;
        public void RunSkipped(RunRecord finished, string label) => Skipped++;
        public void Training(TrainProgress progress) { }
        public void RunFinished(RunRecord record, string label) => Finished++;
        public void RunFailed(RunSpec spec, string label, string error) => Failed++;
    }

    [Fact]
    public void Tune_searches_the_grid_retrains_the_best_and_a_rerun_skips_everything()
    {
        string db = Path.Combine(TestFiles.TempDir(), "results.db");
        var spec = Spec("lora", new Dictionary<string, string[]> { ["rank"] = new[] { "2", "4" } });
        var counter = new Counter();
        TuneResult result;
        using (var results = ResultsDb.Open(db))
            result = new StudyProtocol(new RunExecutor(results, CPU, counter)).Tune(spec);
        Assert.Equal(4, result.Search.Count);
        Assert.All(result.Search, r => Assert.Equal(RunStatus.Finished, r.Status));
        Assert.Equal(result.Search.Max(r => r.Top1), result.Best!.Top1);
        var final = Assert.Single(result.Final);
        Assert.Equal("test", final.Spec.EvalSplit);
        Assert.Equal("train800val200", final.Spec.TrainSplit);
        Assert.Equal(result.Best.Spec.Lr, final.Spec.Lr);
        Assert.Equal(result.Best.Spec.HyperJson, final.Spec.HyperJson);
        Assert.Equal(5, counter.Finished);

        var again = new Counter();
        using (var results = ResultsDb.Open(db))
        {
            var rerun = new StudyProtocol(new RunExecutor(results, CPU, again)).Tune(spec);
            Assert.Equal(result.Final[0].Top1, rerun.Final[0].Top1);
            Assert.Equal(5, results.Runs().Count);
            Assert.Equal(32, results.Predictions(final.Id).Count);
        }
        Assert.Equal(0, again.Started);
        Assert.Equal(5, again.Skipped);
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("vpt-deep")]
    [InlineData("adapter-houlsby")]
    [InlineData("ssf+lora")]
    public void Tune_runs_the_protocol_for_other_methods(string method)
    {
        string db = Path.Combine(TestFiles.TempDir(), "results.db");
        using var results = ResultsDb.Open(db);
        var result = new StudyProtocol(new RunExecutor(results, CPU)).Tune(Spec(method));
        Assert.Equal(2, result.Search.Count);
        Assert.Equal(RunStatus.Finished, Assert.Single(result.Final).Status);
        Assert.All(results.Runs(), r => Assert.Equal(method, r.Spec.Method));
    }

    [Fact]
    public void A_one_point_grid_skips_the_search_and_trains_on_train800val200_directly()
    {
        using var results = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "results.db"));
        var result = new StudyProtocol(new RunExecutor(results, CPU)).Tune(Spec("bitfit") with { Lrs = new[] { 1e-2 } });

        Assert.Empty(result.Search);
        Assert.Null(result.Best);
        var final = Assert.Single(result.Final);
        Assert.Equal(RunStatus.Finished, final.Status);
        Assert.Equal("train800val200", final.Spec.TrainSplit);
        Assert.Equal("test", final.Spec.EvalSplit);
        Assert.Equal(1e-2, final.Spec.Lr);
        Assert.NotNull(result.Mean);
        Assert.DoesNotContain(results.Runs(), r => r.Spec.Stage == RunStage.Search);
    }

    [Fact]
    public void Seeds_give_a_mean_and_standard_deviation()
    {
        using var results = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "results.db"));
        var result = new StudyProtocol(new RunExecutor(results, CPU)).Tune(Spec("bitfit") with { Lrs = new[] { 1e-2 }, Seeds = new[] { 1, 2, 3 } });
        Assert.Equal(3, result.Final.Count);
        Assert.NotNull(result.Mean);
        Assert.NotNull(result.StdDev);
        Assert.Equal(new[] { 1, 2, 3 }, result.Final.Select(r => r.Spec.Seed));
    }

    [Fact]
    public void A_killed_tune_resumes_without_redoing_finished_runs()
    {
        string dir = TestFiles.TempDir();
        string db = Path.Combine(dir, "results.db");
        string[] args =
        {
            "tune", "--data", Task.Value, "--checkpoint", TinyVtab.Backbone, "--method", "lora", "--grid", "rank=1,2,3,4",
            "--lrs", "1e-3,2e-3", "--wds", "1e-4", "--epochs", "3", "--warmup", "1", "--batch-size", "16", "--db", db, "--quiet",
        };
        // Start the sweep, wait until two runs are finished, kill it mid-run.
        using var process = CliRunner.Start(dir, args);
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (FinishedRuns(db) < 2 && DateTime.UtcNow < deadline && !process.HasExited) Thread.Sleep(200);
        Assert.False(process.HasExited, "the sweep ended before it could be killed");
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
        int finishedBefore = FinishedRuns(db);
        Assert.InRange(finishedBefore, 2, 7);

        var r = CliRunner.RunIn(dir, args);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("already finished", r.Stdout);
        using var results = ResultsDb.Open(db);
        var runs = results.Runs();
        Assert.Equal(9, runs.Count(x => x.Status == RunStatus.Finished));
        Assert.Equal(runs.Count, runs.Select(x => x.Key).Distinct().Count());
        Assert.Equal("ok", results.CheckIntegrity());
    }

    static int FinishedRuns(string db)
    {
        if (!File.Exists(db)) return 0;
        try
        {
            using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly");
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "SELECT COUNT(*) FROM runs WHERE status = 'finished'";
            return Convert.ToInt32(cmd.ExecuteScalar());
        }
        catch (SqliteException) { return 0; }
    }
}

public class ShrunkenProtocolTests
{
    [Fact]
    public void The_shrunken_protocol_searches_on_prefixes_and_retrains_on_both_and_names_them()
    {
        string dir = TinyVtab.Create(Path.Combine(TestFiles.TempDir("tiny-shrunk"), "tiny"));
        var task = PeftSharp.Data.ImageTask.Open(dir);
        var splits = ProtocolSplits.Of(task, 20, 8);
        Assert.Equal(("train800[:20]", "val200[:8]", "train800[:20]+val200[:8]"), (splits.SearchTrainName, splits.SearchValName, splits.FinalTrainName));
        Assert.Equal(20, splits.SearchTrain.Count);
        Assert.Equal(28, splits.FinalTrain.Count);
        for (int i = 0; i < 20; i++) Assert.Equal(task.Train.Label(i), splits.FinalTrain.Label(i));
        for (int i = 0; i < 8; i++) Assert.Equal(task.Val.Label(i), splits.FinalTrain.Label(20 + i));
        Assert.Equal(task.Val.ReadImage(3).Pixels, splits.FinalTrain.ReadImage(23).Pixels);

        var full = ProtocolSplits.Of(task, null, null);
        Assert.Equal(("train800", "val200", "train800val200"), (full.SearchTrainName, full.SearchValName, full.FinalTrainName));
        Assert.Throws<PeftSharpException>(() => ProtocolSplits.Of(task, 20, null));
        var tooMany = Assert.Throws<PeftSharpException>(() => ProtocolSplits.Of(task, 49, 8));
        Assert.Contains("first 49 images of 48", tooMany.Message);
    }

    [Fact]
    public void A_shrunken_tune_records_its_splits_and_retrains_with_every_seed()
    {
        string db = Path.Combine(TestFiles.TempDir(), "results.db");
        var spec = new TuneSpec
        {
            TaskDirectory = TinyVtab.Create(Path.Combine(TestFiles.TempDir("tiny-shrunk2"), "tiny")),
            Backbone = new BackboneSpec(null, null, TinyVtab.Backbone), Method = "bitfit", Lrs = new[] { 1e-3, 1e-2 },
            WeightDecays = new[] { 1e-4 }, Train = new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 16 },
            TrainImages = 24, ValImages = 8, Seeds = new[] { 42, 43 },
        };
        using var results = ResultsDb.Open(db);
        var result = new StudyProtocol(new RunExecutor(results, CPU)).Tune(spec);
        Assert.All(result.Search, r => Assert.Equal(("train800[:24]", "val200[:8]"), (r.Spec.TrainSplit, r.Spec.EvalSplit)));
        Assert.Equal(new[] { 42, 43 }, result.Final.Select(r => r.Spec.Seed));
        Assert.All(result.Final, r => Assert.Equal("train800[:24]+val200[:8]", r.Spec.TrainSplit));
        Assert.All(result.Final, r => Assert.Equal(32, results.Predictions(r.Id).Count));
    }
}
