using PeftSharp.Evaluation;

namespace PeftSharp.Results;

/// <summary>
/// Where runs and their predictions are recorded: the embedded SQLite file (<see cref="ResultsDb"/>) or a shared
/// PostgreSQL database (<see cref="Postgres.PostgresResultsStore"/>); <see cref="ResultsStores.Open"/> picks one from
/// the <c>--db</c> argument. Both keep the same schema and the same crash-safety contract: a run is 'running' from
/// <see cref="BeginRun"/> until the one transaction of <see cref="FinishRun"/> stores its outcome and predictions.
/// </summary>
public interface IResultsStore : IDisposable
{
    /// <summary>The store as shown to people: a file path, or a database URL without its password.</summary>
    string Location { get; }

    /// <summary>The folder the database file lies in (per-run epoch checkpoints go beside it); null for a server.</summary>
    string? LocalFolder { get; }

    /// <summary>Records the start of a run, with no lease, and returns its id; an unfinished row with the same key is
    /// replaced unless a live owner holds it (then InvalidOperationException: use <see cref="TryBeginRun"/>).</summary>
    long BeginRun(RunSpec spec, RunContext context);

    /// <summary>
    /// Begins the run for <paramref name="owner"/> under a lease of <paramref name="lease"/> (by the database clock),
    /// replacing a failed attempt or a running one whose lease ran out (its owner died); or, when the key is finished
    /// or another owner's lease is alive, begins nothing and says which run holds the key.
    /// </summary>
    RunStart TryBeginRun(RunSpec spec, RunContext context, string owner, TimeSpan lease);

    /// <summary>Extends the lease of a running run; false when it is no longer <paramref name="owner"/>'s running run.</summary>
    bool RenewLease(long id, string owner, TimeSpan lease);

    /// <summary>Stores the outcome and every prediction and marks the run finished, all in one transaction.</summary>
    void FinishRun(long id, RunOutcome outcome, IReadOnlyList<Prediction> predictions);

    /// <summary>Marks a running run failed; false if it was not running.</summary>
    bool FailRun(long id, string error);

    /// <summary>The finished run with this key, or null (running and failed runs do not count).</summary>
    RunRecord? TryGetFinished(string key);

    RunRecord? TryGetRun(long id);

    /// <summary>The runs matching <paramref name="filter"/> (all if null), oldest first.</summary>
    IReadOnlyList<RunRecord> Runs(RunFilter? filter = null);

    /// <summary>The best finished search run of each (dataset, method, sweep) by validation top-1 (ties: lower lr,
    /// lower wd, hyperparameter JSON, earlier run).</summary>
    IReadOnlyList<RunRecord> BestSearchRuns(RunFilter? filter = null);

    /// <summary>The stored predictions of a run, by example index.</summary>
    IReadOnlyList<Prediction> Predictions(long runId);

    /// <summary>Stores <paramref name="content"/> as the run's artefact of this kind (e.g. "adapter"), replacing an
    /// earlier one; the content is stored once per SHA-256, however many runs share it.</summary>
    void PutArtifact(long runId, string kind, byte[] content);

    /// <summary>The run's artefact of this kind, or null if none was stored.</summary>
    byte[]? GetArtifact(long runId, string kind);

    /// <summary>The hash and size of the run's artefact of this kind, without reading it; null if none was stored.</summary>
    ArtifactInfo? FindArtifact(long runId, string kind);

    /// <summary>The best finished search run of one dataset and method within one sweep (null: the runs without a sweep id).</summary>
    RunRecord? BestSearchRun(string dataset, string method, string? sweepId);
}
