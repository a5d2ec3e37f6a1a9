using PeftSharp.Evaluation;
using System.Buffers.Binary;
using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;

namespace PeftSharp.Results;

/// <summary>
/// What the SQLite and PostgreSQL stores share: the runs logic on one ADO.NET connection, with SQL both engines
/// accept (<see cref="ResultsSql"/>). A subclass opens the connection, creates or migrates the schema and says how a
/// write transaction is run (SQLite: IMMEDIATE, retried while busy). One instance may be shared between threads:
/// calls are serialized, because neither provider's connection is thread-safe.
/// </summary>
public abstract class SqlResultsStore : IResultsStore
{
    const string TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";

    readonly DbConnection connection;
    readonly Lock gate = new();

    protected SqlResultsStore(DbConnection connection) => this.connection = connection;

    public abstract string Location { get; }
    public abstract string? LocalFolder { get; }

    /// <summary>An SQL expression for the database's clock in Unix milliseconds (leases use the server's clock, so
    /// workers on hosts whose clocks disagree still agree on when a lease ran out).</summary>
    internal abstract string NowMillisSql { get; }

    /// <summary>What a claim's row selection ends with so concurrent claimers skip each other's rows ("" where the
    /// write transaction already serializes claimers).</summary>
    internal abstract string SkipLockedSql { get; }

    public static string KeyOf(RunSpec spec) => RunSpec.KeyOf(spec);

    public void Dispose()
    {
        lock (gate) connection.Dispose();
    }

    // ---- writing -------------------------------------------------------------------------------------------------

    public long BeginRun(RunSpec spec, RunContext context)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(context);
        string key = spec.Key;
        return Write(tx =>
        {
            var holder = HolderOf(key, tx);
            if (holder is { Status: RunStatus.Finished })
                throw new InvalidOperationException($"run {key} is already finished in {Location}; check TryGetFinished before BeginRun");
            if (holder is { Status: RunStatus.Running, LeaseAlive: true })
                throw new InvalidOperationException($"run {key} is being trained by {holder.Owner} (its lease is alive); use TryBeginRun to wait for it");
            if (holder != null) Execute(NowSql(ResultsSql.DeleteReplaceable), tx, ("@id", holder.Id), ("@owner", null));
            return Convert.ToInt64(Scalar(ResultsSql.InsertRun, tx, RunParameters(spec, context))!, CultureInfo.InvariantCulture);
        });
    }

    public RunStart TryBeginRun(RunSpec spec, RunContext context, string owner, TimeSpan lease)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        if (lease <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(lease), lease, "must be positive");
        string key = spec.Key;
        // A concurrent writer that inserted or renewed the key between our read and our write makes the delete and
        // the insert no-ops (PostgreSQL; SQLite's write transaction lets one writer in at a time): then look again.
        while (true)
        {
            var start = Write(tx =>
            {
                var holder = HolderOf(key, tx);
                if (holder is { Status: RunStatus.Finished } || holder is { Status: RunStatus.Running, LeaseAlive: true } && holder.Owner != owner)
                    return new RunStart(holder.Id, false, holder.Status, holder.Owner);
                if (holder != null) Execute(NowSql(ResultsSql.DeleteReplaceable), tx, ("@id", holder.Id), ("@owner", owner));
                (string, object?)[] parameters = [.. RunParameters(spec, context), ("@owner", owner), ("@lease_ms", LeaseMs(lease))];
                return Scalar(NowSql(ResultsSql.InsertLeasedRun), tx, parameters) is { } id
                    ? new RunStart(Convert.ToInt64(id, CultureInfo.InvariantCulture), true, RunStatus.Running, owner)
                    : null;
            });
            if (start != null) return start;
        }
    }

    public bool RenewLease(long id, string owner, TimeSpan lease) =>
        Write(tx => Execute(NowSql(ResultsSql.RenewLease), tx, ("@id", id), ("@owner", owner), ("@lease_ms", LeaseMs(lease))) == 1);

    sealed record Holder(long Id, RunStatus Status, string? Owner, bool LeaseAlive);

    Holder? HolderOf(string key, DbTransaction tx) =>
        QueryIn(tx, NowSql(ResultsSql.LeaseOfKey), r => new Holder(
            Convert.ToInt64(r.GetValue(0), CultureInfo.InvariantCulture), RunNames.Status(r.GetString(1)),
            r.IsDBNull(2) ? null : r.GetString(2), Convert.ToInt64(r.GetValue(3), CultureInfo.InvariantCulture) == 1),
            ("@key", key)).SingleOrDefault();

    static (string, object?)[] RunParameters(RunSpec spec, RunContext context) =>
    [
        ("@key", spec.Key), ("@stage", RunNames.Of(spec.Stage)), ("@dataset", spec.Dataset),
        ("@dataset_path", context.DatasetPath), ("@train_split", spec.TrainSplit), ("@eval_split", spec.EvalSplit),
        ("@method", spec.Method), ("@hyper_json", spec.HyperJson), ("@lr", spec.Lr),
        ("@weight_decay", spec.WeightDecay), ("@seed", (long)spec.Seed), ("@epochs", (long)spec.Epochs),
        ("@batch_size", (long)spec.BatchSize), ("@training_json", spec.TrainingJson), ("@model_json", spec.ModelJson),
        ("@checkpoint", spec.Checkpoint), ("@sweep_id", spec.SweepId), ("@family", spec.Family), ("@code_version", context.CodeVersion),
        ("@host", context.Host), ("@started_utc", Now()),
    ];

    /// <summary>Fills in the database clock (leases are measured by it, so hosts whose clocks disagree still agree).</summary>
    string NowSql(string template) => template.Replace("{now}", NowMillisSql);

    static long LeaseMs(TimeSpan lease) => (long)lease.TotalMilliseconds;

    /// <summary>
    /// Stores the outcome and all predictions and marks the run finished, in one transaction: if anything fails
    /// (a bad prediction, a crash) nothing of it is stored and the run stays 'running'.
    /// </summary>
    public void FinishRun(long id, RunOutcome outcome, IReadOnlyList<Prediction> predictions)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        ArgumentNullException.ThrowIfNull(predictions);
        outcome.Validate();
        Write(tx =>
        {
            int changed = Execute(ResultsSql.FinishRun, tx,
                ("@id", id), ("@top1", outcome.Top1), ("@metrics_json", outcome.MetricsJson),
                ("@trainable_params", outcome.TrainableParams), ("@train_seconds", outcome.TrainSeconds),
                ("@eval_seconds", outcome.EvalSeconds), ("@images_per_second", outcome.ImagesPerSecond),
                ("@finished_utc", Now()));
            if (changed == 0) throw NotRunning(id, tx);
            InsertPredictions(id, predictions, tx);
            return 0;
        });
    }

    public bool FailRun(long id, string error) =>
        Write(tx => Execute(ResultsSql.FailRun, tx, ("@id", id), ("@error", error ?? ""), ("@finished_utc", Now())) == 1);

    // ---- artefacts -----------------------------------------------------------------------------------------------

    public void PutArtifact(long runId, string kind, byte[] content)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        ArgumentNullException.ThrowIfNull(content);
        string sha256 = Convert.ToHexStringLower(SHA256.HashData(content));
        // The content first: a row never names content that is not there (content nobody names is harmless).
        StoreContent(sha256, content);
        Write(tx =>
        {
            if (Scalar(ResultsSql.StatusOfId, tx, ("@id", runId)) is null)
                throw new InvalidOperationException($"run {runId} is not in {Location}; its {kind} was not stored");
            StoreContentRow(sha256, content, tx);
            return Execute(ResultsSql.InsertArtifact, tx, ("@run_id", runId), ("@kind", kind), ("@sha256", sha256),
                           ("@bytes", (long)content.Length), ("@created_utc", Now()));
        });
    }

    public ArtifactInfo? FindArtifact(long runId, string kind) =>
        Query(ResultsSql.SelectArtifact, r => new ArtifactInfo(runId, kind, r.GetString(0), Convert.ToInt64(r.GetValue(1), CultureInfo.InvariantCulture)),
              ("@run_id", runId), ("@kind", kind)).SingleOrDefault();

    /// <summary>The artefact's content, checked against its hash (a damaged file is an error, not a wrong model).</summary>
    public byte[]? GetArtifact(long runId, string kind)
    {
        if (FindArtifact(runId, kind) is not { } info) return null;
        byte[] content = LoadContent(info.Sha256);
        if (content.Length != info.Bytes || Convert.ToHexStringLower(SHA256.HashData(content)) != info.Sha256)
            throw new PeftSharpException($"{DescribeContent(info.Sha256)}: the {kind} of run {runId} is damaged (its SHA-256 or size differs from the stored {info.Sha256}, {info.Bytes} bytes)");
        return content;
    }

    /// <summary>Stores content outside the database before its row is written (SQLite: a file beside it); no-op by default.</summary>
    protected virtual void StoreContent(string sha256, byte[] content) { }

    /// <summary>Stores content inside the row's transaction (PostgreSQL: a row per hash); no-op by default.</summary>
    protected virtual void StoreContentRow(string sha256, byte[] content, DbTransaction tx) { }

    /// <summary>The stored content of this hash; a PeftSharpException naming where it should be when it is missing.</summary>
    protected abstract byte[] LoadContent(string sha256);

    /// <summary>Where the content of this hash is kept, as shown in messages.</summary>
    protected abstract string DescribeContent(string sha256);

    void InsertPredictions(long runId, IReadOnlyList<Prediction> predictions, DbTransaction tx)
    {
        using var command = Command(ResultsSql.InsertPrediction, tx, ("@run_id", runId));
        var example = AddParameter(command, "@example", DbType.Int32);
        var label = AddParameter(command, "@label", DbType.Int32);
        var predicted = AddParameter(command, "@predicted", DbType.Int32);
        var logits = AddParameter(command, "@logits", DbType.Binary);
        int classes = -1;
        for (int i = 0; i < predictions.Count; i++)
        {
            var p = predictions[i] ?? throw new ArgumentException($"prediction {i} is null", nameof(predictions));
            if (p.Logits is null) throw new ArgumentException($"prediction {i} (example {p.Index}) has no logits", nameof(predictions));
            if (classes < 0) classes = p.Logits.Length;
            else if (p.Logits.Length != classes)
                throw new ArgumentException($"prediction {i} (example {p.Index}) has {p.Logits.Length} logits, the first has {classes}", nameof(predictions));
            example.Value = p.Index;
            label.Value = p.Label;
            predicted.Value = p.Predicted;
            logits.Value = LogitsToBlob(p.Logits);
            command.ExecuteNonQuery();
        }
    }

    static DbParameter AddParameter(DbCommand command, string name, DbType type)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.DbType = type;
        command.Parameters.Add(parameter);
        return parameter;
    }

    Exception NotRunning(long id, DbTransaction tx) => Scalar(ResultsSql.StatusOfId, tx, ("@id", id)) switch
    {
        null => new InvalidOperationException($"run {id} is not in {Location} (a later BeginRun of the same key replaced it); its result was not stored"),
        var status => new InvalidOperationException($"run {id} is {status}, not running; its result was not stored"),
    };

    // ---- reading -------------------------------------------------------------------------------------------------

    public RunRecord? TryGetFinished(string key) => QueryRuns(ResultsSql.SelectFinishedByKey, ("@key", key)).SingleOrDefault();

    public RunRecord? TryGetRun(long id) => QueryRuns(ResultsSql.SelectRunById, ("@id", id)).SingleOrDefault();

    public IReadOnlyList<RunRecord> Runs(RunFilter? filter = null) => QueryRuns(ResultsSql.SelectRuns, FilterParameters(filter));

    public IReadOnlyList<RunRecord> BestSearchRuns(RunFilter? filter = null) =>
        QueryRuns(ResultsSql.SelectBestSearchRuns, FilterParameters(filter));

    public RunRecord? BestSearchRun(string dataset, string method, string? sweepId) =>
        BestSearchRuns(new RunFilter(dataset, method, SweepId: sweepId)).SingleOrDefault(r => r.Spec.SweepId == sweepId);

    public IReadOnlyList<Prediction> Predictions(long runId) =>
        Query(ResultsSql.SelectPredictions, r => new Prediction(r.GetInt32(0), r.GetInt32(1), r.GetInt32(2), BlobToLogits((byte[])r.GetValue(3))),
              ("@run_id", runId));

    IReadOnlyList<RunRecord> QueryRuns(string sql, params (string Name, object? Value)[] parameters) => Query(sql, ReadRun, parameters);

    static (string, object?)[] FilterParameters(RunFilter? f) =>
    [
        ("@dataset", f?.Dataset), ("@method", f?.Method),
        ("@stage", f?.Stage is { } stage ? RunNames.Of(stage) : null),
        ("@status", f?.Status is { } status ? RunNames.Of(status) : null),
        ("@sweep_id", f?.SweepId), ("@family", f?.Family),
    ];

    static RunRecord ReadRun(DbDataReader r)
    {
        string Text(string column) => r.GetString(r.GetOrdinal(column));
        string? TextOrNull(string column) => r.IsDBNull(r.GetOrdinal(column)) ? null : r.GetString(r.GetOrdinal(column));
        double Real(string column) => r.GetDouble(r.GetOrdinal(column));
        long Integer(string column) => Convert.ToInt64(r.GetValue(r.GetOrdinal(column)), CultureInfo.InvariantCulture);

        var spec = new RunSpec
        {
            Stage = RunNames.Stage(Text("stage")), Dataset = Text("dataset"), TrainSplit = Text("train_split"),
            EvalSplit = Text("eval_split"), Method = Text("method"), HyperJson = Text("hyper_json"), Lr = Real("lr"),
            WeightDecay = Real("weight_decay"), Seed = (int)Integer("seed"), Epochs = (int)Integer("epochs"),
            BatchSize = (int)Integer("batch_size"), TrainingJson = Text("training_json"), ModelJson = Text("model_json"),
            Checkpoint = Text("checkpoint"), SweepId = TextOrNull("sweep_id"), Family = Text("family"),
        };
        var context = new RunContext { DatasetPath = Text("dataset_path"), CodeVersion = Text("code_version"), Host = Text("host") };
        var status = RunNames.Status(Text("status"));
        RunOutcome? outcome = status != RunStatus.Finished ? null : new RunOutcome
        {
            Top1 = Real("top1"), MetricsJson = Text("metrics_json"), TrainableParams = Integer("trainable_params"),
            TrainSeconds = Real("train_seconds"), EvalSeconds = Real("eval_seconds"), ImagesPerSecond = Real("images_per_second"),
        };
        string? finished = TextOrNull("finished_utc");
        return new RunRecord(Integer("id"), Text("run_key"), spec, context, status, outcome,
                             ParseTimestamp(Text("started_utc")), finished is null ? null : ParseTimestamp(finished), TextOrNull("error"));
    }

    // ---- plumbing (also used by the work queue in PeftSharp.Sweeps) ------------------------------------------------

    /// <summary>Runs <paramref name="body"/> in one write transaction; an exception from it rolls everything back.</summary>
    internal T Write<T>(Func<DbTransaction, T> body)
    {
        lock (gate) return RunWriteTransaction(connection, body);
    }

    /// <summary>How this engine runs a write transaction on <paramref name="connection"/> (begin, body, commit).</summary>
    protected abstract T RunWriteTransaction<T>(DbConnection connection, Func<DbTransaction, T> body);

    /// <summary>The rows of a read outside any transaction, each turned into a <typeparamref name="T"/>.</summary>
    internal IReadOnlyList<T> Query<T>(string sql, Func<DbDataReader, T> row, params (string Name, object? Value)[] parameters)
    {
        lock (gate) return QueryIn(null, sql, row, parameters);
    }

    internal IReadOnlyList<T> QueryIn<T>(DbTransaction? tx, string sql, Func<DbDataReader, T> row, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, tx, parameters);
        using var reader = command.ExecuteReader();
        var list = new List<T>();
        while (reader.Read()) list.Add(row(reader));
        return list;
    }

    internal DbCommand Command(string sql, DbTransaction? tx, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }
        return command;
    }

    internal int Execute(string sql, DbTransaction? tx, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, tx, parameters);
        return command.ExecuteNonQuery();
    }

    internal object? Scalar(string sql, DbTransaction? tx, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, tx, parameters);
        var value = command.ExecuteScalar();
        return value is DBNull ? null : value;
    }

    internal static string Now() => DateTime.UtcNow.ToString(TimestampFormat, CultureInfo.InvariantCulture);

    static DateTime ParseTimestamp(string text) =>
        DateTime.ParseExact(text, TimestampFormat, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);

    /// <summary>float32 little-endian, independent of the machine's byte order.</summary>
    internal static byte[] LogitsToBlob(float[] logits)
    {
        var bytes = new byte[logits.Length * sizeof(float)];
        for (int i = 0; i < logits.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), logits[i]);
        return bytes;
    }

    internal static float[] BlobToLogits(byte[] bytes)
    {
        if (bytes.Length % sizeof(float) != 0) throw new InvalidDataException($"a logits blob of {bytes.Length} bytes is not float32 data");
        var logits = new float[bytes.Length / sizeof(float)];
        for (int i = 0; i < logits.Length; i++) logits[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * sizeof(float)));
        return logits;
    }
}
