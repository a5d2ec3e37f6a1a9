using PeftSharp.Results;

namespace PeftSharp.Tests.Cli;

/// <summary>The bench's profiles through the sweep queue, and halving where the queue cannot run it.</summary>
public class BenchQueueTests
{
    [Fact]
    public void Standard_profile_queued_for_a_worker_then_reported_without_training_again()
    {
        string dir = TestFiles.TempDir("bench-queue"), report = Path.Combine(dir, "report"), db = Path.Combine(report, "results.db");
        string[] profile = { "--profile", "standard", "--search", "grid", "--tasks", "dsprites-loc", "--methods", "linear", "--epochs", "1",
                             "--out", report, "--checkpoint", TestFiles.VitCheckpoint, "--quiet" };
        // The profile searches by halving, which the queue cannot: it says so, and queues the grid when asked.
        CliRunner.AssertOneLineError(CliRunner.Run(["bench", "--queue", .. profile.Where(a => a is not "--search" and not "grid")]),
                                     "the standard profile searches by successive halving");
        var queued = CliRunner.Run(["bench", "--queue", .. profile]);
        Assert.True(queued.ExitCode == 0, queued.Stderr);
        // Two cells (linear on the pretrained and the random-init backbone), each lr 1e-3 and 1e-2: four search runs.
        Assert.Contains("plan bench-standard: 2 cells, 4 run(s) queued", queued.Stdout);
        var worker = CliRunner.Run("worker", "--db", db);
        Assert.True(worker.ExitCode == 0, worker.Stderr);
        using (var store = ResultsStores.Open(db))
        {
            var runs = store.Runs();
            // The standard profile: whole splits, and the choice retrained with two seeds.
            Assert.Equal((4, 4), (runs.Count(r => r.Spec.Stage == RunStage.Search), runs.Count(r => r.Spec.Stage == RunStage.Final)));
            Assert.All(runs.Where(r => r.Spec.Stage == RunStage.Search), r => Assert.Equal(("train800", "val200"), (r.Spec.TrainSplit, r.Spec.EvalSplit)));
            Assert.Equal(new[] { 42, 43 }, runs.Where(r => r.Spec.Stage == RunStage.Final).Select(r => r.Spec.Seed).Distinct().Order());
        }
        var bench = CliRunner.Run(["bench", .. profile[..^1]]);
        Assert.True(bench.ExitCode == 0, bench.Stderr);
        Assert.DoesNotContain(": training ", bench.Stdout);
        Assert.Contains("Profile `standard`", File.ReadAllText(Path.Combine(report, "summary.md")));
    }

    [Fact]
    public void Halving_through_the_sweep_queue_is_one_clear_line()
    {
        string dir = TestFiles.TempDir("bench-queue-halving");
        var bench = CliRunner.Run("bench", "--quick", "--queue", "--search", "halving", "--tasks", "dsprites-loc", "--methods", "linear",
                                  "--out", Path.Combine(dir, "report"), "--checkpoint", TestFiles.VitCheckpoint);
        CliRunner.AssertOneLineError(bench, "the sweep queue trains whole grids");
        var badSearch = CliRunner.Run("bench", "--quick", "--search", "random", "--out", Path.Combine(dir, "report"));
        CliRunner.AssertOneLineError(badSearch, "--search must be grid or halving");
    }
}
