using System.Data.Common;
using System.Globalization;
using PeftSharp.Results;
using PeftSharp.Training;

namespace PeftSharp.Sweeps;

public enum QueueStatus { Pending, Running, Finished, Failed }

/// <summary>One queued run: a stage, grid point and seed of a sweep, and the key of the run it stands for.</summary>
public sealed record QueueItem(long Id, string RunKey, string SweepId, string Plan, RunStage Stage, int Point, int Seed, int Attempts);

/// <summary>A queue row as <c>sweep status</c> lists it.</summary>
public sealed record QueueRow(QueueItem Item, QueueStatus Status, string? Worker, long? RunId, string? Error);

/// <summary>Where a sweep stands: its queued runs by stage and status.</summary>
public sealed record SweepProgress(string Plan, string SweepId)
{
    public Dictionary<(RunStage Stage, QueueStatus Status), int> Counts { get; } = new();
    public int Count(QueueStatus status) => Counts.Where(c => c.Key.Status == status).Sum(c => c.Value);
    public int Count(RunStage stage) => Counts.Where(c => c.Key.Stage == stage).Sum(c => c.Value);
    public bool Done => Count(QueueStatus.Pending) + Count(QueueStatus.Running) == 0 && (Count(RunStage.Final) > 0 || Count(QueueStatus.Finished) == 0);
}

/// <summary>What planning wrote: the plan's sweeps and how many runs were new to the queue.</summary>
public sealed record PlanResult(string Plan, IReadOnlyList<string> SweepIds, int Queued, int AlreadyQueued);

/// <summary>
/// The sweep work queue in the results database. <see cref="Plan"/> queues every run of one or more tune requests
/// as pending; a worker <see cref="Claim"/>s one at a time under a lease it renews (<see cref="Heartbeat"/>) while it
/// trains; <see cref="Refresh"/> returns runs whose worker stopped heartbeating to pending and, when a sweep's search
/// is over, queues the retraining of its best configuration on train800val200 (once: the queue's run keys are
/// unique). On PostgreSQL, claimers skip each other's rows (FOR UPDATE SKIP LOCKED); on SQLite the write
/// transaction lets one claimer in at a time.
/// </summary>
public sealed partial class WorkQueue
{
    /// <summary>A run that lost this many workers (each died mid-run) fails instead of being claimed again.</summary>
    public const int DefaultMaxAttempts = 3;

    readonly SqlResultsStore store;
    readonly Dictionary<string, ISweepPlan> plans = new();

    public WorkQueue(SqlResultsStore store, int maxAttempts = DefaultMaxAttempts)
    {
        this.store = store;
        MaxAttempts = maxAttempts;
    }

    public int MaxAttempts { get; }
    public SqlResultsStore Store => store;

    // ---- planning ------------------------------------------------------------------------------------------------

    /// <summary>Queues every run of each request: its search runs, or its final runs when a one-point grid has
    /// nothing to search. Planning the same requests again queues nothing new.</summary>
    /// <param name="planName">Null: named by the requests themselves (<see cref="DefaultPlanName"/>), so planning the
    /// same requests again finds the same plan.</param>
    /// <summary>"plan-" and the first 12 hex digits of the SHA-256 of the requests' anchored specs.</summary>
    public static string DefaultPlanName(IEnumerable<TuneSpec> requests) =>
        "plan-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes(string.Join("\n", requests.Select(r => SweepSpecJson.Write(SweepSpecJson.Anchored(r)))))))[..12];

    public PlanResult Plan(string? planName, IEnumerable<TuneSpec> requests)
    {
        var list = requests.ToList();
        // The queue hands out a grid's runs independently; halving's rungs depend on the previous rung's scores.
        if (list.FirstOrDefault(r => r.Halving != null) is { } halving)
            throw new PeftSharpException("search", $"{halving.Method}: the sweep queue searches whole grids; successive halving runs in one process (tune or bench with halving)");
        planName ??= DefaultPlanName(list);
        ArgumentException.ThrowIfNullOrWhiteSpace(planName);
        requests = list;
        var sweepIds = new List<string>();
        int queued = 0, already = 0;
        foreach (var request in requests)
        {
            var spec = SweepSpecJson.Anchored(request);
            var plan = SweepPlans.Create(spec);
            plans[plan.SweepId] = plan;
            var stage = plan.SkipsSearch ? RunStage.Final : RunStage.Search;
            var runs = plan.SkipsSearch
                ? spec.Seeds.Select(seed => (Point: 0, Seed: seed)).ToList()
                : Enumerable.Range(0, plan.PointCount).Select(p => (Point: p, Seed: plan.SearchSeed)).ToList();
            int added = store.Write(tx =>
            {
                store.Execute(QueueSql.InsertSweep, tx, ("@sweep_id", plan.SweepId), ("@plan", planName),
                              ("@spec_json", SweepSpecJson.Write(spec)), ("@created_utc", SqlResultsStore.Now()));
                return runs.Sum(r => Enqueue(tx, plan, planName, stage, r.Point, r.Seed));
            });
            sweepIds.Add(plan.SweepId);
            queued += added;
            already += runs.Count - added;
        }
        return new PlanResult(planName, sweepIds, queued, already);
    }

    int Enqueue(DbTransaction tx, ISweepPlan plan, string planName, RunStage stage, int point, int seed) =>
        store.Execute(QueueSql.Enqueue, tx, ("@run_key", plan.RunSpec(stage, point, seed).Key), ("@sweep_id", plan.SweepId),
                      ("@plan", planName), ("@stage", RunNames.Of(stage)), ("@point", (long)point), ("@seed", (long)seed));

    /// <summary>The sweep's plan, rebuilt from its stored request (once per queue instance).</summary>
    public ISweepPlan PlanOf(string sweepId)
    {
        if (plans.TryGetValue(sweepId, out var plan)) return plan;
        string json = SpecJson(sweepId);
        if (VideoSweepSpec.IsVideo(json)) throw new InvalidOperationException($"sweep '{sweepId}' is a video sweep (VideoPlanOf)");
        return plans[sweepId] = SweepPlans.Create(SweepSpecJson.Read(json));
    }

    /// <summary>Frees the data the plans keep between their runs (a worker calls this when it stops).</summary>
    public void ReleasePlanData()
    {
        foreach (var plan in plans.Values) plan.Dispose();
    }

    // ---- claiming ------------------------------------------------------------------------------------------------

    /// <summary>Takes the oldest pending run (of <paramref name="planName"/>, or of any plan) for <paramref name="worker"/>; null when none is pending.</summary>
    public QueueItem? Claim(string worker, TimeSpan lease, string? planName = null) =>
        store.Write(tx => store.QueryIn(tx, Sql(QueueSql.Claim), ReadItem,
                                        ("@worker", worker), ("@lease_ms", LeaseMs(lease)), ("@plan", planName)).SingleOrDefault());

    /// <summary>Extends the lease; false when the run is no longer this worker's (its lease ran out and it was reclaimed).</summary>
    public bool Heartbeat(QueueItem item, string worker, TimeSpan lease) =>
        store.Write(tx => store.Execute(Sql(QueueSql.Heartbeat), tx, ("@id", item.Id), ("@worker", worker), ("@lease_ms", LeaseMs(lease))) == 1);

    /// <summary>Records how the worker's run ended; false when the run was no longer this worker's.</summary>
    public bool Complete(QueueItem item, string worker, RunRecord record) =>
        Finish(item, worker, record.Status == RunStatus.Finished ? QueueStatus.Finished : QueueStatus.Failed, record.Id, record.Error);

    public bool Fail(QueueItem item, string worker, string error) => Finish(item, worker, QueueStatus.Failed, null, error);

    /// <summary>Puts the worker's run back to pending with <paramref name="error"/> noted; false when it was no longer
    /// this worker's. The next claim counts another attempt.</summary>
    public bool Release(QueueItem item, string worker, string error) =>
        store.Write(tx => store.Execute(QueueSql.Release, tx, ("@id", item.Id), ("@worker", worker), ("@error", error)) == 1);

    bool Finish(QueueItem item, string worker, QueueStatus status, long? runId, string? error) =>
        store.Write(tx => store.Execute(QueueSql.Complete, tx, ("@id", item.Id), ("@worker", worker), ("@status", StatusName(status)),
                                        ("@run_id", runId), ("@error", error)) == 1);

    // ---- upkeep and the selection step ---------------------------------------------------------------------------

    /// <summary>
    /// Adopts results whose worker died before marking them, returns expired leases to pending (or fails runs that
    /// lost <see cref="MaxAttempts"/> workers), and queues the final runs of every sweep whose search is over.
    /// Safe to run from any number of workers at once. Returns the number of final runs queued.
    /// </summary>
    public int Refresh()
    {
        store.Write(tx =>
        {
            store.Execute(QueueSql.AdoptFinishedRuns, tx);
            return store.Execute(Sql(QueueSql.ReclaimExpired), tx, ("@max_attempts", (long)MaxAttempts));
        });
        var ready = store.Query(QueueSql.SweepsReadyForSelection, r => (SweepId: r.GetString(0), Plan: r.GetString(1)));
        return ready.Sum(s => QueueFinalRuns(s.SweepId, s.Plan));
    }

    /// <summary>The selection step: the best search point of the sweep, retrained once per seed. A concurrent
    /// selection of the same sweep computes the same runs, and the unique run keys keep one copy.</summary>
    int QueueFinalRuns(string sweepId, string planName)
    {
        var best = store.Query(QueueSql.BestSearchPoint, r => Convert.ToInt32(r.GetValue(0), CultureInfo.InvariantCulture), ("@sweep_id", sweepId));
        if (best.Count == 0) return 0;   // every search run failed: nothing to retrain
        var plan = PlanOf(sweepId);
        return store.Write(tx => plan.Spec.Seeds.Sum(seed => Enqueue(tx, plan, planName, RunStage.Final, best[0], seed)));
    }

    /// <summary>Runs pending or running (of the plan, or of all plans): while there are any, a sweep may still grow.</summary>
    public int OpenWork(string? planName = null) =>
        Convert.ToInt32(store.Query(QueueSql.OpenWork, r => r.GetValue(0), ("@plan", planName)).Single(), CultureInfo.InvariantCulture);

    public IReadOnlyList<SweepProgress> Progress(string? planName = null)
    {
        var sweeps = new Dictionary<string, SweepProgress>();
        foreach (var (plan, sweep, stage, status, count) in store.Query(QueueSql.Counts,
                     r => (r.GetString(0), r.GetString(1), RunNames.Stage(r.GetString(2)), Status(r.GetString(3)), Convert.ToInt32(r.GetValue(4), CultureInfo.InvariantCulture)),
                     ("@plan", planName)))
        {
            if (!sweeps.TryGetValue(sweep, out var progress)) sweeps[sweep] = progress = new SweepProgress(plan, sweep);
            progress.Counts[(stage, status)] = count;
        }
        return sweeps.Values.ToList();
    }

    public IReadOnlyList<QueueRow> Rows(string? planName = null) =>
        store.Query(QueueSql.Items, r => new QueueRow(ReadItemColumns(r, attemptsColumn: 9), Status(r.GetString(7)),
                                                      r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(10) ? null : Convert.ToInt64(r.GetValue(10), CultureInfo.InvariantCulture),
                                                      r.IsDBNull(11) ? null : r.GetString(11)),
                    ("@plan", planName));

    // ---- plumbing ------------------------------------------------------------------------------------------------

    string Sql(string template) => template.Replace("{now}", store.NowMillisSql).Replace("{skip_locked}", store.SkipLockedSql);

    static long LeaseMs(TimeSpan lease) => (long)lease.TotalMilliseconds;

    static QueueItem ReadItem(DbDataReader r) => ReadItemColumns(r, attemptsColumn: 7);

    // id, run_key, sweep_id, plan, stage, point, seed lead both row shapes; attempts sits where the query puts it.
    static QueueItem ReadItemColumns(DbDataReader r, int attemptsColumn) =>
        new(Convert.ToInt64(r.GetValue(0), CultureInfo.InvariantCulture), r.GetString(1), r.GetString(2), r.GetString(3), RunNames.Stage(r.GetString(4)),
            Convert.ToInt32(r.GetValue(5), CultureInfo.InvariantCulture), Convert.ToInt32(r.GetValue(6), CultureInfo.InvariantCulture),
            Convert.ToInt32(r.GetValue(attemptsColumn), CultureInfo.InvariantCulture));

    static string StatusName(QueueStatus status) => status.ToString().ToLowerInvariant();

    static QueueStatus Status(string text) => Enum.TryParse<QueueStatus>(text, ignoreCase: true, out var s) ? s
        : throw new InvalidDataException($"unknown queue status '{text}'");
}
