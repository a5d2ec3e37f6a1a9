using PeftSharp.Results;
using PeftSharp.Tests.Results.Postgres;
using PeftSharp.Tests.Sweeps;
using PeftSharp.Training;
using static PeftSharp.Tests.Results.ResultsTestData;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Results;

/// <summary>A running run's lease: a live owner keeps its run, a dead one (lease run out) loses it.</summary>
public sealed class RunLeaseTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-lease");
    readonly Lazy<TestPostgres> server = new(() => new TestPostgres());
    string DbPath => Path.Combine(dir, "results.db");

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    static readonly TimeSpan Long = TimeSpan.FromMinutes(5), Short = TimeSpan.FromMilliseconds(300);

    static void A_live_lease_is_not_replaced(SqlResultsStore db)
    {
        var mine = db.TryBeginRun(Spec(), Context, "alice", Long);
        Assert.True(mine.Begun);
        var theirs = db.TryBeginRun(Spec(), Context, "bob", Long);
        Assert.False(theirs.Begun);
        Assert.Equal((mine.Id, RunStatus.Running, "alice"), (theirs.Id, theirs.Status, theirs.Owner));
        Assert.Throws<InvalidOperationException>(() => db.BeginRun(Spec(), Context));   // the unleased BeginRun too
        Assert.True(db.RenewLease(mine.Id, "alice", Long));
        Assert.False(db.RenewLease(mine.Id, "bob", Long));
        db.FinishRun(mine.Id, Outcome(), Predictions(0, 3, 2));   // alice's result lands
        var after = db.TryBeginRun(Spec(), Context, "bob", Long);
        Assert.Equal((mine.Id, false, RunStatus.Finished), (after.Id, after.Begun, after.Status));
        Assert.Single(db.Runs());
    }

    static void An_expired_lease_is_taken_over(SqlResultsStore db)
    {
        var dead = db.TryBeginRun(Spec(), Context, "alice", Short);
        Assert.True(dead.Begun);
        Thread.Sleep(Short * 3);
        var taken = db.TryBeginRun(Spec(), Context, "bob", Long);
        Assert.True(taken.Begun);
        Assert.NotEqual(dead.Id, taken.Id);
        Assert.False(db.RenewLease(dead.Id, "alice", Long));   // alice's run is gone: her result cannot land
        Assert.Throws<InvalidOperationException>(() => db.FinishRun(dead.Id, Outcome(), Predictions(0, 3, 2)));
        db.FinishRun(taken.Id, Outcome(), Predictions(0, 3, 2));
        Assert.Equal(RunStatus.Finished, Assert.Single(db.Runs()).Status);
    }

    static void A_renewed_lease_outlives_its_length(SqlResultsStore db)
    {
        var run = db.TryBeginRun(Spec(), Context, "alice", Short);
        for (int i = 0; i < 6; i++)
        {
            Thread.Sleep(Short / 3);
            Assert.True(db.RenewLease(run.Id, "alice", Short));
        }
        Assert.False(db.TryBeginRun(Spec(), Context, "bob", Long).Begun);
    }

    [Fact] public void Sqlite_a_live_lease_is_not_replaced() { using var db = ResultsDb.Open(DbPath); A_live_lease_is_not_replaced(db); }
    [Fact] public void Sqlite_an_expired_lease_is_taken_over() { using var db = ResultsDb.Open(DbPath); An_expired_lease_is_taken_over(db); }
    [Fact] public void Sqlite_a_renewed_lease_outlives_its_length() { using var db = ResultsDb.Open(DbPath); A_renewed_lease_outlives_its_length(db); }
    [PostgresFact] public void Postgres_a_live_lease_is_not_replaced() { using var db = ResultsStores.Open(server.Value.Url); A_live_lease_is_not_replaced(db); }
    [PostgresFact] public void Postgres_an_expired_lease_is_taken_over() { using var db = ResultsStores.Open(server.Value.Url); An_expired_lease_is_taken_over(db); }

    /// <summary>Owners asking for one key at the same moment, each on its own connection: exactly one begins it.</summary>
    static void Concurrent_owners_begin_a_key_once(Func<SqlResultsStore> open)
    {
        const int owners = 6;
        var stores = Enumerable.Range(0, owners).Select(_ => open()).ToArray();
        try
        {
            for (int key = 0; key < 10; key++)   // a race shows in some rounds only
            {
                using var go = new Barrier(owners);
                var starts = Enumerable.Range(0, owners).AsParallel().WithDegreeOfParallelism(owners).Select(i =>
                {
                    go.SignalAndWait();
                    return stores[i].TryBeginRun(Spec(key), Context, $"owner-{i}", Long);
                }).ToList();
                var begun = Assert.Single(starts, s => s.Begun);
                Assert.All(starts.Where(s => !s.Begun), s => Assert.Equal((begun.Id, begun.Owner), (s.Id, s.Owner)));
            }
            Assert.Equal(10, stores[0].Runs().Count);
        }
        finally
        {
            foreach (var s in stores) s.Dispose();
        }
    }

    [Fact] public void Sqlite_concurrent_owners_begin_a_key_once() => Concurrent_owners_begin_a_key_once(() => ResultsDb.Open(DbPath));
    [PostgresFact] public void Postgres_concurrent_owners_begin_a_key_once() => Concurrent_owners_begin_a_key_once(() => ResultsStores.Open(server.Value.Url));

    [Fact]
    public void A_run_left_running_by_an_older_peftsharp_has_no_lease_and_is_replaced()
    {
        using var db = ResultsDb.Open(DbPath);
        long orphan = db.BeginRun(Spec(), Context);   // no owner, no lease: as rows written before schema 3
        var start = db.TryBeginRun(Spec(), Context, "bob", Long);
        Assert.True(start.Begun);
        Assert.Null(db.TryGetRun(orphan));
    }

    // ---- the executor: waits for a live owner, takes a dead owner's run over -----------------------------------

    sealed class Recorder : IRunObserver
    {
        public int Started, Skipped, Waiting, Failed;
        public void RunStarting(RunSpec spec, string label) => Started++;
        public void RunSkipped(RunRecord finished, string label) => Skipped++;
        public void Training(TrainProgress progress) { }
        public void RunFinished(RunRecord record, string label) { }
        public void RunFailed(RunSpec spec, string label, string error) => Failed++;
        public void RunWaiting(RunSpec spec, string label, string? owner) => Interlocked.Increment(ref Waiting);
    }

    static RunRequest Request(out TunePlan plan, int epochs = 1)
    {
        var spec = SweepTestKit.Spec("bitfit", [1e-2]);
        plan = TunePlan.Create(spec with { Train = spec.Train with { Epochs = epochs } });
        var (train, eval) = plan.Loaders(RunStage.Final);
        return plan.Request(RunStage.Final, 0, 42, train, eval);
    }

    [Fact]
    public void The_executor_waits_for_a_live_owner_and_returns_its_result_without_training()
    {
        using var db = ResultsDb.Open(DbPath);
        var request = Request(out _);
        var other = db.TryBeginRun(request.Spec, Context, "other-process", Long);
        var recorder = new Recorder();
        var executor = new RunExecutor(db, CPU, recorder) { Poll = TimeSpan.FromMilliseconds(50) };
        var waiting = Task.Run(() => executor.Execute(request, "waits"));
        // The owner finishes only once the executor is waiting (on a loaded machine the task may start late).
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref recorder.Waiting) == 1, TimeSpan.FromSeconds(30)), "the executor never waited");
        Assert.False(waiting.IsCompleted);
        db.FinishRun(other.Id, Outcome(0.625), Predictions(0, 32, 4));
        var record = waiting.Wait(TimeSpan.FromSeconds(30)) ? waiting.Result : throw new TimeoutException("the executor did not return");
        Assert.Equal(other.Id, record.Id);
        Assert.Equal(0.625, record.Top1);
        Assert.Equal((0, 1), (recorder.Started, recorder.Waiting));
    }

    [Fact]
    public void The_executor_returns_the_failure_of_the_owner_it_waited_for()
    {
        using var db = ResultsDb.Open(DbPath);
        var request = Request(out _);
        var other = db.TryBeginRun(request.Spec, Context, "other-process", Long);
        var recorder = new Recorder();
        var waiting = Task.Run(() => new RunExecutor(db, CPU, recorder) { Poll = TimeSpan.FromMilliseconds(50) }.Execute(request, "waits"));
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref recorder.Waiting) == 1, TimeSpan.FromSeconds(30)), "the executor never waited");
        db.FailRun(other.Id, "out of memory");
        var record = waiting.Wait(TimeSpan.FromSeconds(30)) ? waiting.Result : throw new TimeoutException("the executor did not return");
        Assert.Equal((other.Id, RunStatus.Failed, "out of memory"), (record.Id, record.Status, record.Error));
        Assert.Equal((0, 1), (recorder.Started, recorder.Failed));
    }

    [Fact]
    public void The_executor_takes_over_the_run_of_a_dead_owner_and_trains_it()
    {
        using var db = ResultsDb.Open(DbPath);
        var request = Request(out _);
        var dead = db.TryBeginRun(request.Spec, Context, "dead-process", TimeSpan.FromSeconds(1));
        var recorder = new Recorder();
        var record = new RunExecutor(db, CPU, recorder) { Poll = TimeSpan.FromMilliseconds(100) }.Execute(request, "takes over");
        Assert.Equal(RunStatus.Finished, record.Status);
        Assert.NotEqual(dead.Id, record.Id);
        Assert.Equal((1, 1), (recorder.Started, recorder.Waiting));   // waited while the lease was alive, then trained
        Assert.Single(db.Runs());
    }

    [Fact]
    public void A_training_run_renews_its_lease_so_nobody_takes_it_over()
    {
        using var db = ResultsDb.Open(DbPath);
        var request = Request(out _, epochs: 150);
        // A lease far shorter than training: without the heartbeat the run would be open to takeover mid-way.
        var executor = new RunExecutor(db, CPU) { Lease = TimeSpan.FromMilliseconds(1200), Owner = "trainer" };
        var training = Task.Run(() => executor.Execute(request, "trains"));
        // The thief starts once the trainer holds the run: before that, beginning it is no takeover (on a loaded
        // machine the pool thread can start later than the thief's first try).
        using (var probe = ResultsDb.Open(DbPath))
            Assert.True(SpinWait.SpinUntil(() => training.IsCompleted || probe.Runs().Any(r => r.Status == RunStatus.Running), TimeSpan.FromSeconds(30)),
                        "the trainer never began the run");
        int refused = 0;
        while (!training.IsCompleted)
        {
            Thread.Sleep(300);
            using var other = ResultsDb.Open(DbPath);
            var start = other.TryBeginRun(request.Spec, Context, "thief", TimeSpan.FromMinutes(1));
            Assert.False(start.Begun, "a live run was taken over");
            if (start.Status == RunStatus.Running) refused++;
        }
        Assert.Equal(RunStatus.Finished, training.Result.Status);
        // Refusals come every 300 ms: nine of them span 2.7 s, more than twice the lease.
        Assert.True(refused >= 9, $"training was too short to test the heartbeat ({refused} refusals)");
    }
}
