using System.Collections.Concurrent;
using System.Diagnostics;
using PeftSharp.Results;
using PeftSharp.Results.Postgres;
using PeftSharp.Sweeps;
using PeftSharp.Tests.Cli;
using PeftSharp.Tests.Results.Postgres;
using PeftSharp.Tests.Training;

namespace PeftSharp.Tests.Sweeps;

/// <summary>Real worker processes on one database: four on the test PostgreSQL server, one of them killed mid-run;
/// two on a SQLite file.</summary>
public sealed class DistributedSweepTests : IDisposable
{
    const string Plan = "kill-test";
    readonly Lazy<TestPostgres> server = new(() => new TestPostgres());
    readonly string dir = TestFiles.TempDir("peftsharp-workers");
    readonly List<Worker> workers = new();

    public void Dispose()
    {
        foreach (var w in workers) w.Dispose();
        if (server.IsValueCreated) server.Value.Dispose();
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>A `peftsharp worker` process whose output lines are collected as they come.</summary>
    sealed class Worker : IDisposable
    {
        public readonly Process Process;
        public readonly BlockingCollection<string> Lines = new();
        readonly Task stdout, stderr;
        public readonly ConcurrentQueue<string> Errors = new();

        public Worker(string workingDirectory, string db)
        {
            Process = CliRunner.Start(workingDirectory, "worker", "--db", db, "--sweep", Plan, "--lease-seconds", "3", "--poll-seconds", "0.5", "--quiet");
            stdout = Task.Run(() =>
            {
                while (Process.StandardOutput.ReadLine() is { } line) Lines.Add(line);
                Lines.CompleteAdding();
            });
            stderr = Task.Run(() =>
            {
                while (Process.StandardError.ReadLine() is { } line) Errors.Enqueue(line);
            });
        }

        public string Id => $"{Environment.MachineName}:{Process.Id}";
        public string Output => string.Join("\n", Lines) + "\n" + string.Join("\n", Errors);

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.WaitForExit();
            Task.WaitAll(stdout, stderr);
            Process.Dispose();
        }
    }

    [PostgresFact]
    public void Four_workers_finish_every_run_exactly_once_even_when_one_is_killed_mid_run()
    {
        string db = server.Value.Url;
        // 4 methods × 5 lrs × 2 wds = 40 search runs, then one final run per method: 44 tiny runs.
        var plan = PlanSweep(db, "bitfit,linear,layernorm,lora", "1e-3,3e-3,1e-2,3e-2,1e-1", "1e-4,1e-3");
        Assert.Contains("40 run(s) queued", plan.Stdout);

        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 4; i++) workers.Add(new Worker(dir, db));
        var (victim, orphan) = KillOneMidRun(db);

        foreach (var w in workers.Where(w => w != victim))
        {
            Assert.True(w.Process.WaitForExit(TimeSpan.FromMinutes(4)), $"worker {w.Id} did not finish:\n{w.Output}");
            Assert.True(w.Process.ExitCode == 0, $"worker {w.Id} exited {w.Process.ExitCode}:\n{w.Output}");
        }
        Console.WriteLine($"4 workers, one killed: 44 runs in {clock.Elapsed.TotalSeconds:F1} s");

        using var store = PostgresResultsStore.Open(db);
        var queue = new WorkQueue(store);
        var rows = queue.Rows(Plan);
        Assert.Equal(44, rows.Count);
        Assert.All(rows, r => Assert.True(r.Status == QueueStatus.Finished, $"run {r.Item.Id} is {r.Status}: {r.Error}"));
        var reclaimed = rows.Single(r => r.Item.Id == orphan);
        Assert.True(reclaimed.Item.Attempts >= 2, $"the killed worker's run was claimed {reclaimed.Item.Attempts} time(s)");
        Assert.NotEqual(victim.Id, reclaimed.Worker);

        var runs = store.Runs();
        Assert.Equal(44, runs.Count);   // the killed attempt's 'running' row was replaced, not kept beside the result
        Assert.All(runs, r => Assert.Equal(RunStatus.Finished, r.Status));
        Assert.Equal(rows.Select(r => r.Item.RunKey).Order(), runs.Select(r => r.Key).Order());

        // The same sweep in one process gives the same runs and the same accuracies.
        var specs = queue.Progress(Plan).Select(s => queue.PlanOf(s.SweepId).Spec).ToList();
        var reference = SweepTestKit.TuneInProcess(specs);
        Assert.Equal(reference.OrderBy(kv => kv.Key), runs.ToDictionary(r => r.Key, r => r.Top1).OrderBy(kv => kv.Key));

        // The password is in no log line and no stored field.
        string password = server.Value.Password;
        Assert.All(workers, w => Assert.DoesNotContain(password, w.Output));
        Assert.DoesNotContain(password, RunExport.ToJson(runs));
        Assert.DoesNotContain(password, plan.Stdout + plan.Stderr);
    }

    [Fact]
    public void Two_workers_share_a_sqlite_file_and_run_each_run_once()
    {
        string db = Path.Combine(dir, "results.db");
        PlanSweep(db, "bitfit,linear", "1e-3,1e-2,1e-1", "1e-4");   // 6 search runs, 2 final runs
        for (int i = 0; i < 2; i++) workers.Add(new Worker(dir, db));
        foreach (var w in workers)
        {
            Assert.True(w.Process.WaitForExit(TimeSpan.FromMinutes(3)), $"worker {w.Id} did not finish:\n{w.Output}");
            Assert.True(w.Process.ExitCode == 0, $"worker {w.Id} exited {w.Process.ExitCode}:\n{w.Output}");
        }
        using var store = ResultsDb.Open(db);
        var rows = new WorkQueue(store).Rows(Plan);
        Assert.Equal(8, rows.Count);
        Assert.All(rows, r => Assert.Equal((QueueStatus.Finished, 1), (r.Status, r.Item.Attempts)));
        Assert.Equal(8, store.Runs(new RunFilter(Status: RunStatus.Finished)).Count);
        // Each run was claimed by exactly one of the two workers.
        int claims = workers.Sum(w => w.Lines.Count(l => l.Contains(" claimed ")));
        Assert.Equal(8, claims);
    }

    CliRunner.Result PlanSweep(string db, string methods, string lrs, string wds)
    {
        var plan = CliRunner.RunIn(dir, "sweep", "plan", "--db", db, "--name", Plan, "--data", SweepTestKit.Task, "--method", methods,
            "--grid", "none", "--lrs", lrs, "--wds", wds, "--checkpoint", TinyVtab.Backbone, "--epochs", "1", "--warmup", "0", "--batch-size", "16");
        Assert.True(plan.ExitCode == 0, plan.Stderr + plan.Stdout);
        return plan;
    }

    /// <summary>SIGKILLs a worker right after it started training its third run, and returns it with the queue row it
    /// left running. If the kill came too late (the run was already recorded) the next worker is tried.</summary>
    (Worker Victim, long Orphan) KillOneMidRun(string db)
    {
        using var store = PostgresResultsStore.Open(db);
        var queue = new WorkQueue(store);
        foreach (var victim in workers.Take(3))
        {
            int started = 0;
            foreach (var line in victim.Lines.GetConsumingEnumerable())
                if (line.Contains(": training ") && ++started == 3) break;
            Assert.True(started == 3, $"worker {victim.Id} ended before its third run:\n{victim.Output}");
            victim.Process.Kill();   // SIGKILL: no chance to clean up
            victim.Process.WaitForExit();
            var left = queue.Rows(Plan).Where(r => r.Status == QueueStatus.Running && r.Worker == victim.Id).ToList();
            if (left.Count == 1) return (victim, left[0].Item.Id);
        }
        Assert.Fail("no worker could be killed while a run of its own was in flight");
        throw new UnreachableException();
    }
}
