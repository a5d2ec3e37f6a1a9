using PeftSharp.Results;
using PeftSharp.Sweeps;
using PeftSharp.Training;
using static PeftSharp.Tests.Sweeps.SweepTestKit;

namespace PeftSharp.Tests.Sweeps;

/// <summary>The work queue on the embedded SQLite store, in one process (the PostgreSQL and many-process cases are in
/// DistributedSweepTests).</summary>
public sealed class WorkQueueTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-queue");
    string DbPath => Path.Combine(dir, "results.db");

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    [Fact]
    public void A_planned_sweep_queues_the_keys_tune_would_run_and_planning_again_queues_nothing()
    {
        var spec = Spec("bitfit", [1e-3, 1e-2], [1e-4, 1e-3]);
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db);
        var first = queue.Plan("p", [spec]);
        var again = queue.Plan("p", [spec]);

        Assert.Equal(4, first.Queued);
        Assert.Equal((0, 4), (again.Queued, again.AlreadyQueued));
        var plan = TunePlan.Create(spec);
        Assert.Equal(plan.SweepId, Assert.Single(first.SweepIds));
        var expected = Enumerable.Range(0, 4).Select(p => plan.RunSpec(RunStage.Search, p, 42).Key);
        Assert.Equal(expected, queue.Rows().Select(r => r.Item.RunKey));
        Assert.All(queue.Rows(), r => Assert.Equal(QueueStatus.Pending, r.Status));
    }

    [Fact]
    public void Workers_drain_the_queue_and_the_results_equal_the_single_process_tune()
    {
        var specs = new[]
        {
            Spec("bitfit", [1e-3, 1e-2]), Spec("lora", [1e-3, 1e-2], seeds: [1, 2]), Spec("linear", [1e-2]),
            Spec("bitfit", [1e-3, 1e-2]) with { TrainImages = 24, ValImages = 8 },   // the shrunken protocol's splits
        };
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db);
        queue.Plan("p", specs);
        // Two workers on one store, one after the other: the second finds only what the first's completions queued.
        var a = Drain(queue, "p", "worker-a");
        var b = Drain(queue, "p", "worker-b");

        // 2 + 2 + 2 search runs, 1 + 2 + 1 final runs, and the one-point grid's final run straight away.
        Assert.Equal(11, a.Finished + b.Finished);
        Assert.Contains(db.Runs(), r => r.Spec.TrainSplit == "train800[:24]+val200[:8]");
        Assert.Equal(0, a.Failed + b.Failed);
        Assert.All(queue.Rows(), r => Assert.Equal(QueueStatus.Finished, r.Status));
        Assert.All(queue.Progress(), s => Assert.True(s.Done));
        var distributed = db.Runs().ToDictionary(r => r.Key, r => r.Top1);
        Assert.Equal(TuneInProcess(specs).OrderBy(kv => kv.Key), distributed.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void Final_runs_are_claimed_before_search_runs_queued_earlier()
    {
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db);
        // A one-point grid queues its final run at once, behind the two-point grid's search runs.
        queue.Plan("p", [Spec("bitfit", [1e-3, 1e-2]), Spec("linear", [1e-2])]);
        Assert.Equal(new[] { RunStage.Search, RunStage.Search, RunStage.Final }, queue.Rows().Select(r => r.Item.Stage));

        var first = queue.Claim("w", TimeSpan.FromMinutes(1))!;
        var second = queue.Claim("w", TimeSpan.FromMinutes(1))!;
        Assert.Equal((RunStage.Final, "linear"), (first.Stage, first.SweepId.Split('/')[1]));
        Assert.Equal((RunStage.Search, 0), (second.Stage, second.Point));
    }

    [Fact]
    public void A_run_given_back_after_a_native_error_is_claimed_again_as_its_next_attempt()
    {
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db, maxAttempts: 2);
        queue.Plan("p", [Spec("linear", [1e-2])]);
        var first = queue.Claim("w", TimeSpan.FromMinutes(1))!;
        Assert.False(queue.Release(first, "other", "not mine"));
        Assert.True(queue.Release(first, "w", "ExternalException: Unknown scalar type"));
        var row = Assert.Single(queue.Rows());
        Assert.Equal((QueueStatus.Pending, "ExternalException: Unknown scalar type"), (row.Status, row.Error));
        var again = queue.Claim("w2", TimeSpan.FromMinutes(1))!;
        Assert.Equal((first.Id, 2), (again.Id, again.Attempts));

        // libtorch's errors go back while attempts remain; bad input and other exceptions fail at once.
        var native = new System.Runtime.InteropServices.ExternalException("Unknown scalar type");
        Assert.True(SweepWorker.TriesAgain(native, attempts: 1, maxAttempts: 2));
        Assert.False(SweepWorker.TriesAgain(native, attempts: 2, maxAttempts: 2));
        Assert.False(SweepWorker.TriesAgain(new PeftSharpException("data: bad"), attempts: 1, maxAttempts: 3));
        Assert.False(SweepWorker.TriesAgain(new InvalidOperationException("x"), attempts: 1, maxAttempts: 3));
    }

    [Fact]
    public void The_selection_step_queues_the_final_runs_once_when_the_search_is_over()
    {
        var spec = Spec("bitfit", [1e-3, 1e-2], seeds: [1, 2]);
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db);
        queue.Plan("p", [spec]);
        var first = queue.Claim("w", TimeSpan.FromMinutes(1))!;
        Assert.Equal(0, queue.Refresh());   // one search run still pending, one running: too early
        Drain(queue, "p", "w2", maxRuns: 1);   // the other search run
        Assert.Equal(RunStatus.Finished, db.Runs().Single().Status);
        Assert.DoesNotContain(queue.Rows(), r => r.Item.Stage == RunStage.Final);

        // The first claim's worker finishes its run by hand; then any number of refreshes queue the finals once.
        var plan = TunePlan.Create(spec);
        var (train, eval) = plan.Loaders(RunStage.Search);
        using (train)
        using (eval)
        {
            var record = new RunExecutor(db, TorchSharp.torch.CPU).Execute(plan.Request(first.Stage, first.Point, first.Seed, train, eval), "by hand");
            Assert.True(queue.Complete(first, "w", record));
        }
        using var other = ResultsDb.Open(DbPath);
        Assert.Equal(2, queue.Refresh() + new WorkQueue(other).Refresh() + queue.Refresh());
        var finals = queue.Rows().Where(r => r.Item.Stage == RunStage.Final).ToList();
        Assert.Equal(new[] { 1, 2 }, finals.Select(f => f.Item.Seed));
        var best = StudyProtocol.Best(db.Runs(new RunFilter(Stage: RunStage.Search)))!;
        Assert.All(finals, f => Assert.Equal(plan.RunSpec(RunStage.Final, plan.Points.ToList().FindIndex(p => p.Lr == best.Spec.Lr), f.Item.Seed).Key, f.Item.RunKey));
    }

    [Fact]
    public void A_run_whose_worker_stops_heartbeating_is_claimed_again_and_fails_after_too_many_workers_died()
    {
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db, maxAttempts: 2);
        queue.Plan("p", [Spec("bitfit", [1e-2])]);
        var lease = TimeSpan.FromMilliseconds(300);

        var dead = queue.Claim("dead-1", lease)!;
        Assert.Null(queue.Claim("other", lease));   // nothing else pending
        Assert.True(queue.Heartbeat(dead, "dead-1", lease));
        Thread.Sleep(500);                         // the lease runs out
        queue.Refresh();
        var again = queue.Claim("dead-2", lease)!;
        Assert.Equal((dead.Id, 2), (again.Id, again.Attempts));
        Assert.False(queue.Heartbeat(dead, "dead-1", lease));   // the first worker no longer holds it
        Assert.False(queue.Fail(dead, "dead-1", "too late"));

        Thread.Sleep(500);
        queue.Refresh();
        var row = Assert.Single(queue.Rows());
        Assert.Equal(QueueStatus.Failed, row.Status);
        Assert.Contains("stopped heartbeating 2 times", row.Error);
        Assert.Null(queue.Claim("late", lease));
    }

    [Fact]
    public void A_result_stored_by_a_worker_that_died_before_marking_its_row_is_adopted_not_retrained()
    {
        var spec = Spec("bitfit", [1e-2]);
        using var db = ResultsDb.Open(DbPath);
        var queue = new WorkQueue(db);
        queue.Plan("p", [spec]);
        var item = queue.Claim("died", TimeSpan.FromMinutes(5))!;
        var plan = TunePlan.Create(spec);
        var (train, eval) = plan.Loaders(RunStage.Final);
        using (train)
        using (eval)
            new RunExecutor(db, TorchSharp.torch.CPU).Execute(plan.Request(item.Stage, item.Point, item.Seed, train, eval), "then died");

        queue.Refresh();
        var row = Assert.Single(queue.Rows());
        Assert.Equal(QueueStatus.Finished, row.Status);
        Assert.Equal(db.Runs().Single().Id, row.RunId);
    }
}
