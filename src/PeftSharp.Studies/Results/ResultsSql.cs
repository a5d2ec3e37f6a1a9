namespace PeftSharp.Results;

/// <summary>
/// The SQL of the results database. The queries and writes are in the dialect SQLite and PostgreSQL share (parameters
/// as @name, a null filter parameter cast to TEXT so PostgreSQL knows its type), so both stores run the same text;
/// the schema is one text too, with each engine's column types filled in.
/// </summary>
internal static class ResultsSql
{
    /// <summary>The column types of one engine, filled into <see cref="MigrationTemplates"/>.</summary>
    internal sealed record SchemaTypes(string Id, string Integer, string Real, string Blob, string SortedText, string KeyOnlyTable,
                                       string ArtifactContent);

    /// <summary>SQLite: a row id that is never reused, 8-byte integers and reals, a predictions table stored by its key.</summary>
    public static readonly SchemaTypes Sqlite = new("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "REAL", "BLOB", "TEXT", " WITHOUT ROWID",
        "");   // artefact content lies in files beside the database (see ResultsDb)

    /// <summary>PostgreSQL: the text columns results are ordered by sort byte-wise ("C"), as in SQLite and the
    /// in-process protocol's ordinal tie-break, whatever the server's default collation.</summary>
    public static readonly SchemaTypes Postgres = new("BIGSERIAL PRIMARY KEY", "BIGINT", "DOUBLE PRECISION", "BYTEA", "TEXT COLLATE \"C\"", "",
        // a server has no folder beside it: the content is a row, stored once per hash
        "CREATE TABLE artifact_content (sha256 TEXT NOT NULL PRIMARY KEY, content BYTEA NOT NULL);");

    /// <summary>
    /// Migrations(types)[v] takes a database from schema version v to v + 1 (version 0 = empty). Both engines get the
    /// same tables, columns and constraints from one text. To migrate, append a script here and bump
    /// <see cref="ResultsDb.SchemaVersion"/> (SQLite keeps the version in PRAGMA user_version, PostgreSQL in a table).
    /// </summary>
    public static string[] Migrations(SchemaTypes t) =>
        MigrationTemplates.Select(m => m.Replace("{id}", t.Id).Replace("{int}", t.Integer).Replace("{real}", t.Real)
                                        .Replace("{blob}", t.Blob).Replace("{sorted_text}", t.SortedText).Replace("{key_only}", t.KeyOnlyTable)
                                        .Replace("{artifact_content}", t.ArtifactContent)).ToArray();

    static readonly string[] MigrationTemplates =
    {
        """
        CREATE TABLE runs (
            id                {id},   -- never reused: a replaced attempt's id stays dead
            run_key           TEXT    NOT NULL UNIQUE,   -- one row per key: a new attempt replaces an unfinished one
            stage             TEXT    NOT NULL CHECK (stage IN ('search', 'final', 'single')),
            dataset           {sorted_text} NOT NULL,
            dataset_path      TEXT    NOT NULL,
            train_split       TEXT    NOT NULL,
            eval_split        TEXT    NOT NULL,
            method            {sorted_text} NOT NULL,
            hyper_json        {sorted_text} NOT NULL,
            lr                {real}  NOT NULL,
            weight_decay      {real}  NOT NULL,
            seed              {int}   NOT NULL,
            epochs            {int}   NOT NULL,
            batch_size        {int}   NOT NULL,
            training_json     {sorted_text} NOT NULL,
            model_json        TEXT    NOT NULL,
            checkpoint        TEXT    NOT NULL,
            sweep_id          {sorted_text},
            status            TEXT    NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
            trainable_params  {int},
            top1              {real},
            metrics_json      TEXT,
            train_seconds     {real},
            eval_seconds      {real},
            images_per_second {real},
            code_version      TEXT    NOT NULL,
            host              TEXT    NOT NULL,
            started_utc       TEXT    NOT NULL,   -- yyyy-MM-ddTHH:mm:ss.fffZ in both engines, so one reader serves both
            finished_utc      TEXT,
            error             TEXT
        );
        CREATE INDEX runs_by_dataset_method ON runs (dataset, method, stage, status);
        CREATE INDEX runs_by_sweep ON runs (sweep_id);
        CREATE TABLE predictions (
            run_id    {int}   NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            example   INTEGER NOT NULL,
            label     INTEGER NOT NULL,
            predicted INTEGER NOT NULL,
            logits    {blob}  NOT NULL,                  -- float32 little-endian, one per class
            PRIMARY KEY (run_id, example)
        ){key_only};
        """,
        // 2: the work queue of `peftsharp sweep` / `peftsharp worker` (PeftSharp.Sweeps).
        """
        CREATE TABLE sweeps (
            sweep_id    TEXT NOT NULL PRIMARY KEY,   -- the study protocol's sweep id (task/method/hash), as tune gives it
            plan        TEXT NOT NULL,               -- the name of the `sweep plan` that wrote it
            spec_json   TEXT NOT NULL,               -- the tune request, from which every run of the sweep is rebuilt
            created_utc TEXT NOT NULL
        );
        CREATE TABLE sweep_queue (
            id             {id},
            run_key        TEXT   NOT NULL UNIQUE,   -- the run it stands for; unique, so the selection step enqueues once
            sweep_id       TEXT   NOT NULL REFERENCES sweeps (sweep_id),
            plan           TEXT   NOT NULL,
            stage          TEXT   NOT NULL CHECK (stage IN ('search', 'final')),
            point          {int}  NOT NULL,          -- index into the sweep's grid points
            seed           {int}  NOT NULL,
            status         TEXT   NOT NULL CHECK (status IN ('pending', 'running', 'finished', 'failed')),
            worker         TEXT,
            lease_until_ms {int},                    -- the database clock in Unix ms; past it, the run is reclaimed
            attempts       {int}  NOT NULL DEFAULT 0,
            run_id         {int},
            error          TEXT
        );
        CREATE INDEX sweep_queue_by_plan ON sweep_queue (plan, status);
        CREATE INDEX sweep_queue_by_sweep ON sweep_queue (sweep_id, stage, status);
        """,
        // 3: a running run's lease (so a second process waits for a live owner instead of replacing its run) and the
        // artefacts of runs (the trained adapter), content-addressed by SHA-256.
        """
        ALTER TABLE runs ADD COLUMN owner TEXT;
        ALTER TABLE runs ADD COLUMN lease_until_ms {int};
        CREATE TABLE run_artifacts (
            run_id      {int}  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind        TEXT   NOT NULL,   -- 'adapter': the adapter folder as a zip (RunArtifacts)
            sha256      TEXT   NOT NULL,   -- lower-case hex of the content, which is stored once per hash
            bytes       {int}  NOT NULL,
            created_utc TEXT   NOT NULL,
            PRIMARY KEY (run_id, kind)
        );
        CREATE INDEX run_artifacts_by_sha256 ON run_artifacts (sha256);
        {artifact_content}
        """,
        // 4: the task family of a run (classification, dense prediction, video): its metric is the family's.
        """
        ALTER TABLE runs ADD COLUMN family {sorted_text} NOT NULL DEFAULT 'classification';
        """,
    };

    // SQLite only: the schema version, pragmas and checks.
    public const string UserVersion = "PRAGMA user_version";
    public const string SetUserVersion = "PRAGMA user_version = {0}";   // pragmas take no parameters
    public const string CountSchemaObjects = "SELECT count(*) FROM sqlite_master";
    public const string ConnectionPragmas = "PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON";
    public const string WalMode = "PRAGMA journal_mode = WAL";
    public const string IntegrityCheck = "PRAGMA integrity_check";

    public const string StatusOfKey = "SELECT status FROM runs WHERE run_key = @key";
    public const string StatusOfId = "SELECT status FROM runs WHERE id = @id";

    /// <summary>Removes the attempt a begin found replaceable, checking again in the same statement: under PostgreSQL's
    /// READ COMMITTED a statement sees rows committed after the begin's read, and a row inserted or renewed meanwhile
    /// by a live owner must stay. (Predictions of the attempt go with it; an unfinished run has none anyway.)</summary>
    public const string DeleteReplaceable = """
        DELETE FROM runs WHERE id = @id AND (status = 'failed' OR (status = 'running'
            AND (lease_until_ms IS NULL OR lease_until_ms < {now} OR owner = CAST(@owner AS TEXT))))
        """;

    public const string InsertRun = """
        INSERT INTO runs (run_key, stage, dataset, dataset_path, train_split, eval_split, method, hyper_json, lr,
                          weight_decay, seed, epochs, batch_size, training_json, model_json, checkpoint, sweep_id, family,
                          status, code_version, host, started_utc)
        VALUES (@key, @stage, @dataset, @dataset_path, @train_split, @eval_split, @method, @hyper_json, @lr,
                @weight_decay, @seed, @epochs, @batch_size, @training_json, @model_json, @checkpoint, @sweep_id, @family,
                'running', @code_version, @host, @started_utc)
        RETURNING id
        """;

    /// <summary>The run holding a key, and whether its lease is alive by the database clock ({now}).</summary>
    public const string LeaseOfKey = """
        SELECT id, status, owner, CASE WHEN lease_until_ms IS NOT NULL AND lease_until_ms >= {now} THEN 1 ELSE 0 END
        FROM runs WHERE run_key = @key
        """;

    /// <summary>A run begun under a lease; no row when a concurrent writer inserted the key first (PostgreSQL).</summary>
    public const string InsertLeasedRun = """
        INSERT INTO runs (run_key, stage, dataset, dataset_path, train_split, eval_split, method, hyper_json, lr,
                          weight_decay, seed, epochs, batch_size, training_json, model_json, checkpoint, sweep_id, family,
                          status, code_version, host, started_utc, owner, lease_until_ms)
        VALUES (@key, @stage, @dataset, @dataset_path, @train_split, @eval_split, @method, @hyper_json, @lr,
                @weight_decay, @seed, @epochs, @batch_size, @training_json, @model_json, @checkpoint, @sweep_id, @family,
                'running', @code_version, @host, @started_utc, @owner, {now} + @lease_ms)
        ON CONFLICT (run_key) DO NOTHING
        RETURNING id
        """;

    public const string RenewLease = """
        UPDATE runs SET lease_until_ms = {now} + @lease_ms WHERE id = @id AND owner = @owner AND status = 'running'
        """;

    public const string FinishRun = """
        UPDATE runs SET status = 'finished', lease_until_ms = NULL, top1 = @top1, metrics_json = @metrics_json, trainable_params = @trainable_params,
                        train_seconds = @train_seconds, eval_seconds = @eval_seconds,
                        images_per_second = @images_per_second, finished_utc = @finished_utc, error = NULL
        WHERE id = @id AND status = 'running'
        """;

    public const string FailRun = """
        UPDATE runs SET status = 'failed', error = @error, finished_utc = @finished_utc, lease_until_ms = NULL
        WHERE id = @id AND status = 'running'
        """;

    public const string InsertPrediction = """
        INSERT INTO predictions (run_id, example, label, predicted, logits) VALUES (@run_id, @example, @label, @predicted, @logits)
        """;

    public const string InsertArtifact = """
        INSERT INTO run_artifacts (run_id, kind, sha256, bytes, created_utc) VALUES (@run_id, @kind, @sha256, @bytes, @created_utc)
        ON CONFLICT (run_id, kind) DO UPDATE SET sha256 = excluded.sha256, bytes = excluded.bytes, created_utc = excluded.created_utc
        """;
    public const string SelectArtifact = "SELECT sha256, bytes FROM run_artifacts WHERE run_id = @run_id AND kind = @kind";
    public const string InsertArtifactContent = "INSERT INTO artifact_content (sha256, content) VALUES (@sha256, @content) ON CONFLICT (sha256) DO NOTHING";
    public const string SelectArtifactContent = "SELECT content FROM artifact_content WHERE sha256 = @sha256";

    public const string SelectPredictions = "SELECT example, label, predicted, logits FROM predictions WHERE run_id = @run_id ORDER BY example";

    const string RunColumns = """
        id, run_key, stage, dataset, dataset_path, train_split, eval_split, method, hyper_json, lr, weight_decay, seed,
        epochs, batch_size, training_json, model_json, checkpoint, sweep_id, status, trainable_params, top1, metrics_json,
        train_seconds, eval_seconds, images_per_second, code_version, host, started_utc, finished_utc, error, family
        """;

    // A null filter parameter matches every row.
    const string Filter = """
        (CAST(@dataset AS TEXT) IS NULL OR dataset = @dataset) AND (CAST(@method AS TEXT) IS NULL OR method = @method)
        AND (CAST(@stage AS TEXT) IS NULL OR stage = @stage) AND (CAST(@status AS TEXT) IS NULL OR status = @status)
        AND (CAST(@sweep_id AS TEXT) IS NULL OR sweep_id = @sweep_id) AND (CAST(@family AS TEXT) IS NULL OR family = @family)
        """;

    public const string SelectRunById = $"SELECT {RunColumns} FROM runs WHERE id = @id";
    public const string SelectFinishedByKey = $"SELECT {RunColumns} FROM runs WHERE run_key = @key AND status = 'finished'";
    public const string SelectRuns = $"SELECT {RunColumns} FROM runs WHERE {Filter} ORDER BY id";

    /// <summary>
    /// The best finished search run per (dataset, method, sweep) by <see cref="BestConfiguration"/>; runs of different
    /// sweeps that tie on it go to the training JSON, then the earlier run. Runs without a sweep id come first in both
    /// engines (PostgreSQL sorts NULL last).
    /// </summary>
    public static readonly string SelectBestSearchRuns = $"""
        SELECT {RunColumns} FROM (
            SELECT *, row_number() OVER (
                PARTITION BY dataset, method, sweep_id
                ORDER BY {BestConfiguration.OrderBySql()}, training_json ASC, id ASC) AS best_rank
            FROM runs WHERE stage = 'search' AND status = 'finished' AND {Filter}) AS ranked
        WHERE best_rank = 1
        ORDER BY dataset, method, sweep_id IS NOT NULL, sweep_id
        """;
}
