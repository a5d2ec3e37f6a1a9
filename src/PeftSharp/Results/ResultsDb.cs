using System.Buffers.Binary;
using System.Globalization;
using Microsoft.Data.Sqlite;

namespace PeftSharp.Results;

/// <summary>
/// The SQLite file that records every training run and the per-example predictions of its evaluation.
/// Crash safety: a run is inserted as 'running' by <see cref="BeginRun"/> and becomes 'finished' only in the single
/// transaction of <see cref="FinishRun"/> that also stores its predictions, so a killed process leaves either a complete
/// result or a 'running' row, which counts as not finished and is replaced by the next BeginRun of the same key.
/// Concurrency: WAL journal, a 30 s busy timeout, short IMMEDIATE write transactions (retried on SQLITE_BUSY), so
/// several processes can write to one file. One instance may be shared between threads (calls are serialized).
/// Two processes running the same key at the same time are not detected: the later BeginRun takes the key over and
/// the earlier process's FinishRun then fails.
/// </summary>
public sealed class ResultsDb : IDisposable
{
    public const int SchemaVersion = 1;
    public const string DefaultFileName = "results.db";

    const int SqliteBusy = 5, SqliteLocked = 6, SqliteCorrupt = 11, SqliteNotADatabase = 26;
    const int MaxWriteAttempts = 5;
    const string TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";

    readonly SqliteConnection connection;
    readonly Lock gate = new();   // SqliteConnection is not thread-safe

    /// <summary>The path as given to <see cref="Open"/> (used in error messages).</summary>
    public string FilePath { get; }

    ResultsDb(string path, SqliteConnection connection)
    {
        FilePath = path;
        this.connection = connection;
    }

    /// <summary>Opens (creating or migrating if needed) the results database at <paramref name="path"/>.</summary>
    public static ResultsDb Open(string path = DefaultFileName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new PeftSharpException($"{path}: is a folder, expected a results database file");
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);

        // No pooling: Dispose must really close the file; each instance keeps its one connection open anyway.
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = full, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false, DefaultTimeout = 30,
        }.ToString());
        try
        {
            connection.Open();
            var db = new ResultsDb(path, connection);
            db.Initialize();
            return db;
        }
        catch (SqliteException e)
        {
            connection.Dispose();
            throw e.SqliteErrorCode is SqliteNotADatabase or SqliteCorrupt
                ? new PeftSharpException($"{path}: not a SQLite database, expected a PeftSharp results database", e)
                : new PeftSharpException($"{path}: cannot open the results database ({e.Message})", e);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public static string KeyOf(RunSpec spec) => RunSpec.KeyOf(spec);

    public void Dispose() => connection.Dispose();

    // ---- writing -------------------------------------------------------------------------------------------------

    /// <summary>
    /// Records the start of a run and returns its id. An unfinished row with the same key (a killed or failed
    /// earlier attempt) is replaced. Throws if a finished run with this key exists: check <see cref="TryGetFinished"/>.
    /// </summary>
    public long BeginRun(RunSpec spec, RunContext context)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(context);
        string key = spec.Key;
        return Write(tx =>
        {
            if (Scalar(ResultsSql.StatusOfKey, tx, ("@key", key)) is "finished")
                throw new InvalidOperationException($"run {key} is already finished in {FilePath}; check TryGetFinished before BeginRun");
            Execute(ResultsSql.DeleteUnfinishedKey, tx, ("@key", key));
            return (long)Scalar(ResultsSql.InsertRun, tx,
                ("@key", key), ("@stage", RunNames.Of(spec.Stage)), ("@dataset", spec.Dataset),
                ("@dataset_path", context.DatasetPath), ("@train_split", spec.TrainSplit), ("@eval_split", spec.EvalSplit),
                ("@method", spec.Method), ("@hyper_json", spec.HyperJson), ("@lr", spec.Lr),
                ("@weight_decay", spec.WeightDecay), ("@seed", spec.Seed), ("@epochs", spec.Epochs),
                ("@batch_size", spec.BatchSize), ("@training_json", spec.TrainingJson), ("@model_json", spec.ModelJson),
                ("@checkpoint", spec.Checkpoint), ("@sweep_id", spec.SweepId), ("@code_version", context.CodeVersion),
                ("@host", context.Host), ("@started_utc", Now()))!;
        });
    }

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

    /// <summary>Marks a running run failed with <paramref name="error"/>; false if it was not running (so a catch block never throws).</summary>
    public bool FailRun(long id, string error) =>
        Write(tx => Execute(ResultsSql.FailRun, tx, ("@id", id), ("@error", error ?? ""), ("@finished_utc", Now())) == 1);

    void InsertPredictions(long runId, IReadOnlyList<Prediction> predictions, SqliteTransaction tx)
    {
        using var command = Command(ResultsSql.InsertPrediction, tx);
        command.Parameters.AddWithValue("@run_id", runId);
        var example = command.Parameters.Add("@example", SqliteType.Integer);
        var label = command.Parameters.Add("@label", SqliteType.Integer);
        var predicted = command.Parameters.Add("@predicted", SqliteType.Integer);
        var logits = command.Parameters.Add("@logits", SqliteType.Blob);
        command.Prepare();
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

    Exception NotRunning(long id, SqliteTransaction tx) => Scalar(ResultsSql.StatusOfId, tx, ("@id", id)) switch
    {
        null => new InvalidOperationException($"run {id} is not in {FilePath} (a later BeginRun of the same key replaced it); its result was not stored"),
        var status => new InvalidOperationException($"run {id} is {status}, not running; its result was not stored"),
    };

    // ---- reading -------------------------------------------------------------------------------------------------

    /// <summary>The finished run with this key, or null (running and failed runs do not count).</summary>
    public RunRecord? TryGetFinished(string key) => QueryRuns(ResultsSql.SelectFinishedByKey, ("@key", key)).SingleOrDefault();

    public RunRecord? TryGetRun(long id) => QueryRuns(ResultsSql.SelectRunById, ("@id", id)).SingleOrDefault();

    /// <summary>The runs matching <paramref name="filter"/> (all if null), oldest first.</summary>
    public IReadOnlyList<RunRecord> Runs(RunFilter? filter = null) => QueryRuns(ResultsSql.SelectRuns, FilterParameters(filter));

    /// <summary>
    /// The best finished search run of each (dataset, method, sweep) matching <paramref name="filter"/>, by validation
    /// top-1; ties go to the lower lr, then the lower weight decay, then the hyperparameter JSON text.
    /// </summary>
    public IReadOnlyList<RunRecord> BestSearchRuns(RunFilter? filter = null) =>
        QueryRuns(ResultsSql.SelectBestSearchRuns, FilterParameters(filter));

    /// <summary>The best finished search run of one dataset and method within one sweep (null: the runs without a sweep id).</summary>
    public RunRecord? BestSearchRun(string dataset, string method, string? sweepId) =>
        BestSearchRuns(new RunFilter(dataset, method, SweepId: sweepId)).SingleOrDefault(r => r.Spec.SweepId == sweepId);

    /// <summary>The stored predictions of a run, by example index.</summary>
    public IReadOnlyList<Prediction> Predictions(long runId)
    {
        lock (gate)
        {
            using var command = Command(ResultsSql.SelectPredictions, null, ("@run_id", runId));
            using var reader = command.ExecuteReader();
            var list = new List<Prediction>();
            while (reader.Read())
                list.Add(new Prediction(reader.GetInt32(0), reader.GetInt32(1), reader.GetInt32(2), BlobToLogits((byte[])reader.GetValue(3))));
            return list;
        }
    }

    /// <summary>SQLite's integrity check: "ok", or the problems found, one per line.</summary>
    public string CheckIntegrity()
    {
        lock (gate)
        {
            using var command = Command(ResultsSql.IntegrityCheck, null);
            using var reader = command.ExecuteReader();
            var lines = new List<string>();
            while (reader.Read()) lines.Add(reader.GetString(0));
            return string.Join("\n", lines);
        }
    }

    IReadOnlyList<RunRecord> QueryRuns(string sql, params (string Name, object? Value)[] parameters)
    {
        lock (gate)
        {
            using var command = Command(sql, null, parameters);
            using var reader = command.ExecuteReader();
            var list = new List<RunRecord>();
            while (reader.Read()) list.Add(ReadRun(reader));
            return list;
        }
    }

    static (string, object?)[] FilterParameters(RunFilter? f) =>
    [
        ("@dataset", f?.Dataset), ("@method", f?.Method),
        ("@stage", f?.Stage is { } stage ? RunNames.Of(stage) : null),
        ("@status", f?.Status is { } status ? RunNames.Of(status) : null),
        ("@sweep_id", f?.SweepId),
    ];

    static RunRecord ReadRun(SqliteDataReader r)
    {
        string Text(string column) => r.GetString(r.GetOrdinal(column));
        string? TextOrNull(string column) => r.IsDBNull(r.GetOrdinal(column)) ? null : r.GetString(r.GetOrdinal(column));
        double Real(string column) => r.GetDouble(r.GetOrdinal(column));
        long Integer(string column) => r.GetInt64(r.GetOrdinal(column));

        var spec = new RunSpec
        {
            Stage = RunNames.Stage(Text("stage")), Dataset = Text("dataset"), TrainSplit = Text("train_split"),
            EvalSplit = Text("eval_split"), Method = Text("method"), HyperJson = Text("hyper_json"), Lr = Real("lr"),
            WeightDecay = Real("weight_decay"), Seed = (int)Integer("seed"), Epochs = (int)Integer("epochs"),
            BatchSize = (int)Integer("batch_size"), TrainingJson = Text("training_json"), ModelJson = Text("model_json"),
            Checkpoint = Text("checkpoint"), SweepId = TextOrNull("sweep_id"),
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

    // ---- schema --------------------------------------------------------------------------------------------------

    void Initialize()
    {
        Execute(ResultsSql.ConnectionPragmas, null);
        int version = ReadVersion(null);   // the first read of the file: a non-database fails here
        CheckVersion(version, null);
        // WAL lets readers work while one process writes; the mode is stored in the file.
        Execute(ResultsSql.WalMode, null);
        if (version != SchemaVersion) Migrate();
    }

    void Migrate() => Write(tx =>
    {
        int version = ReadVersion(tx);   // another process may have migrated since we looked
        CheckVersion(version, tx);
        for (int v = version; v < SchemaVersion; v++) Execute(ResultsSql.Migrations[v], tx);
        Execute(string.Format(CultureInfo.InvariantCulture, ResultsSql.SetUserVersion, SchemaVersion), tx);
        return 0;
    });

    int ReadVersion(SqliteTransaction? tx) => (int)(long)Scalar(ResultsSql.UserVersion, tx)!;

    void CheckVersion(int version, SqliteTransaction? tx)
    {
        if (version > SchemaVersion)
            throw new PeftSharpException($"{FilePath}: results schema version {version} is newer than this PeftSharp supports ({SchemaVersion}); use a newer PeftSharp");
        if (version < 0 || (version == 0 && (long)Scalar(ResultsSql.CountSchemaObjects, tx)! > 0))
            throw new PeftSharpException($"{FilePath}: a SQLite database of another program, expected a PeftSharp results database");
    }

    // ---- plumbing ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Runs <paramref name="body"/> in an IMMEDIATE transaction (the write lock is taken up front, so it waits in the
    /// busy handler instead of failing on a read-to-write upgrade), retrying the whole transaction if SQLite still
    /// reports the database busy. An exception from the body rolls everything back.
    /// </summary>
    T Write<T>(Func<SqliteTransaction, T> body)
    {
        lock (gate)
        {
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    using var tx = connection.BeginTransaction(deferred: false);
                    T result = body(tx);
                    tx.Commit();
                    return result;
                }
                catch (SqliteException e) when (e.SqliteErrorCode is SqliteBusy or SqliteLocked && attempt < MaxWriteAttempts)
                {
                    Thread.Sleep(Random.Shared.Next(50, 250) * attempt);
                }
            }
        }
    }

    SqliteCommand Command(string sql, SqliteTransaction? tx, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return command;
    }

    int Execute(string sql, SqliteTransaction? tx, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, tx, parameters);
        return command.ExecuteNonQuery();
    }

    object? Scalar(string sql, SqliteTransaction? tx, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, tx, parameters);
        var value = command.ExecuteScalar();
        return value is DBNull ? null : value;
    }

    static string Now() => DateTime.UtcNow.ToString(TimestampFormat, CultureInfo.InvariantCulture);

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
