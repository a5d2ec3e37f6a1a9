using PeftSharp.Results;

namespace PeftSharp.Sweeps;

/// <summary>
/// The work queue's SQL, in the dialect SQLite and PostgreSQL share. {now} is the database clock in Unix ms and
/// {skip_locked} what makes concurrent claimers skip each other's rows (both from the store, see
/// <see cref="Results.SqlResultsStore"/>). The tables are created by the results schema's migrations.
/// </summary>
internal static class QueueSql
{
    public const string InsertSweep = """
        INSERT INTO sweeps (sweep_id, plan, spec_json, created_utc) VALUES (@sweep_id, @plan, @spec_json, @created_utc)
        ON CONFLICT (sweep_id) DO NOTHING
        """;

    public const string SweepSpec = "SELECT spec_json FROM sweeps WHERE sweep_id = @sweep_id";

    /// <summary>A run already queued (by this plan, a rerun of it or the selection step) is left as it is.</summary>
    public const string Enqueue = """
        INSERT INTO sweep_queue (run_key, sweep_id, plan, stage, point, seed, status)
        VALUES (@run_key, @sweep_id, @plan, @stage, @point, @seed, 'pending')
        ON CONFLICT (run_key) DO NOTHING
        """;

    /// <summary>The oldest pending run of the plan (any plan when null) becomes this worker's, with a fresh lease.
    /// Final runs go first: a sweep whose search is over finishes before new searches start, so a long plan stopped
    /// part-way leaves complete cells, not a search of every cell.</summary>
    public const string Claim = """
        UPDATE sweep_queue SET status = 'running', worker = @worker, lease_until_ms = {now} + @lease_ms, attempts = attempts + 1, error = NULL
        WHERE status = 'pending' AND id = (
            SELECT id FROM sweep_queue
            WHERE status = 'pending' AND (CAST(@plan AS TEXT) IS NULL OR plan = @plan)
            ORDER BY CASE WHEN stage = 'final' THEN 0 ELSE 1 END, id LIMIT 1 {skip_locked})
        RETURNING id, run_key, sweep_id, plan, stage, point, seed, attempts
        """;

    public const string Heartbeat = """
        UPDATE sweep_queue SET lease_until_ms = {now} + @lease_ms WHERE id = @id AND worker = @worker AND status = 'running'
        """;

    public const string Complete = """
        UPDATE sweep_queue SET status = @status, run_id = @run_id, error = @error, lease_until_ms = NULL
        WHERE id = @id AND worker = @worker AND status = 'running'
        """;

    /// <summary>The worker gives its run back to the queue, to be claimed again (a failure worth another attempt).</summary>
    public const string Release = """
        UPDATE sweep_queue SET status = 'pending', worker = NULL, lease_until_ms = NULL, error = @error
        WHERE id = @id AND worker = @worker AND status = 'running'
        """;

    /// <summary>A worker that died between storing its result and marking its queue row leaves the result: adopt it.</summary>
    public const string AdoptFinishedRuns = """
        UPDATE sweep_queue SET status = 'finished', lease_until_ms = NULL,
               run_id = (SELECT r.id FROM runs r WHERE r.run_key = sweep_queue.run_key AND r.status = 'finished')
        WHERE status IN ('pending', 'running')
          AND EXISTS (SELECT 1 FROM runs r WHERE r.run_key = sweep_queue.run_key AND r.status = 'finished')
        """;

    /// <summary>A run whose worker stopped heartbeating goes back to pending, or fails once it has lost @max_attempts workers.</summary>
    public const string ReclaimExpired = """
        UPDATE sweep_queue SET
            status = CASE WHEN attempts >= @max_attempts THEN 'failed' ELSE 'pending' END,
            error = CASE WHEN attempts >= @max_attempts THEN 'its worker stopped heartbeating ' || CAST(attempts AS TEXT) || ' times (last: ' || worker || ')' ELSE NULL END,
            worker = CASE WHEN attempts >= @max_attempts THEN worker ELSE NULL END,
            lease_until_ms = NULL
        WHERE status = 'running' AND lease_until_ms < {now}
        """;

    /// <summary>Sweeps whose search is over (nothing pending or running) and whose final runs are not queued yet.</summary>
    public const string SweepsReadyForSelection = """
        SELECT s.sweep_id, s.plan, s.spec_json FROM sweeps s
        WHERE EXISTS (SELECT 1 FROM sweep_queue q WHERE q.sweep_id = s.sweep_id AND q.stage = 'search')
          AND NOT EXISTS (SELECT 1 FROM sweep_queue q WHERE q.sweep_id = s.sweep_id AND q.stage = 'search' AND q.status IN ('pending', 'running'))
          AND NOT EXISTS (SELECT 1 FROM sweep_queue q WHERE q.sweep_id = s.sweep_id AND q.stage = 'final')
        ORDER BY s.sweep_id
        """;

    /// <summary>The grid point of the best finished search run by <see cref="BestConfiguration"/>, then the earlier point.</summary>
    public static readonly string BestSearchPoint = $"""
        SELECT q.point FROM sweep_queue q JOIN runs r ON r.run_key = q.run_key AND r.status = 'finished'
        WHERE q.sweep_id = @sweep_id AND q.stage = 'search' AND q.status = 'finished'
        ORDER BY {BestConfiguration.OrderBySql("r")}, q.point ASC
        LIMIT 1
        """;

    public const string Counts = """
        SELECT plan, sweep_id, stage, status, count(*) FROM sweep_queue
        WHERE CAST(@plan AS TEXT) IS NULL OR plan = @plan
        GROUP BY plan, sweep_id, stage, status
        ORDER BY plan, sweep_id
        """;

    public const string Items = """
        SELECT id, run_key, sweep_id, plan, stage, point, seed, status, worker, attempts, run_id, error FROM sweep_queue
        WHERE CAST(@plan AS TEXT) IS NULL OR plan = @plan
        ORDER BY id
        """;

    public const string OpenWork = """
        SELECT count(*) FROM sweep_queue WHERE status IN ('pending', 'running') AND (CAST(@plan AS TEXT) IS NULL OR plan = @plan)
        """;
}
