namespace PeftSharp.Results.Postgres;

/// <summary>
/// The PostgreSQL schema: the same tables, columns and constraints as <see cref="ResultsSql.Migrations"/>, in
/// PostgreSQL's types (every integer BIGINT, logits BYTEA). The text columns results are ordered by use the "C" collation,
/// so they sort byte-wise (as in SQLite and the in-process protocol's ordinal tie-break) whatever the server's default. The queries and writes are <see cref="ResultsSql"/>'s.
/// </summary>
internal static class PostgresSql
{
    public static readonly string[] Migrations =
    {
        """
        CREATE TABLE runs (
            id                BIGSERIAL PRIMARY KEY,
            run_key           TEXT    NOT NULL UNIQUE,
            stage             TEXT    NOT NULL CHECK (stage IN ('search', 'final', 'single')),
            dataset           TEXT    COLLATE "C" NOT NULL,
            dataset_path      TEXT    NOT NULL,
            train_split       TEXT    NOT NULL,
            eval_split        TEXT    NOT NULL,
            method            TEXT    COLLATE "C" NOT NULL,
            hyper_json        TEXT    COLLATE "C" NOT NULL,
            lr                DOUBLE PRECISION NOT NULL,
            weight_decay      DOUBLE PRECISION NOT NULL,
            seed              BIGINT  NOT NULL,
            epochs            BIGINT  NOT NULL,
            batch_size        BIGINT  NOT NULL,
            training_json     TEXT    COLLATE "C" NOT NULL,
            model_json        TEXT    NOT NULL,
            checkpoint        TEXT    NOT NULL,
            sweep_id          TEXT    COLLATE "C",
            status            TEXT    NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
            trainable_params  BIGINT,
            top1              DOUBLE PRECISION,
            metrics_json      TEXT,
            train_seconds     DOUBLE PRECISION,
            eval_seconds      DOUBLE PRECISION,
            images_per_second DOUBLE PRECISION,
            code_version      TEXT    NOT NULL,
            host              TEXT    NOT NULL,
            started_utc       TEXT    NOT NULL,
            finished_utc      TEXT,
            error             TEXT
        );
        CREATE INDEX runs_by_dataset_method ON runs (dataset, method, stage, status);
        CREATE INDEX runs_by_sweep ON runs (sweep_id);
        CREATE TABLE predictions (
            run_id    BIGINT  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            example   INTEGER NOT NULL,
            label     INTEGER NOT NULL,
            predicted INTEGER NOT NULL,
            logits    BYTEA   NOT NULL,
            PRIMARY KEY (run_id, example)
        );
        """,
        """
        CREATE TABLE sweeps (
            sweep_id    TEXT NOT NULL PRIMARY KEY,
            plan        TEXT NOT NULL,
            spec_json   TEXT NOT NULL,
            created_utc TEXT NOT NULL
        );
        CREATE TABLE sweep_queue (
            id             BIGSERIAL PRIMARY KEY,
            run_key        TEXT   NOT NULL UNIQUE,
            sweep_id       TEXT   NOT NULL REFERENCES sweeps (sweep_id),
            plan           TEXT   NOT NULL,
            stage          TEXT   NOT NULL CHECK (stage IN ('search', 'final')),
            point          BIGINT NOT NULL,
            seed           BIGINT NOT NULL,
            status         TEXT   NOT NULL CHECK (status IN ('pending', 'running', 'finished', 'failed')),
            worker         TEXT,
            lease_until_ms BIGINT,
            attempts       BIGINT NOT NULL DEFAULT 0,
            run_id         BIGINT,
            error          TEXT
        );
        CREATE INDEX sweep_queue_by_plan ON sweep_queue (plan, status);
        CREATE INDEX sweep_queue_by_sweep ON sweep_queue (sweep_id, stage, status);
        """,
    };

    /// <summary>One row holding the schema version (PostgreSQL has no user_version pragma).</summary>
    public const string CreateVersionTable = "CREATE TABLE IF NOT EXISTS peftsharp_schema (version INTEGER NOT NULL)";
    public const string VersionTableExists = "SELECT to_regclass('peftsharp_schema') IS NOT NULL";
    public const string RunsTableExists = "SELECT to_regclass('runs') IS NOT NULL";
    public const string ReadVersion = "SELECT max(version) FROM peftsharp_schema";
    public const string SetVersion = "DELETE FROM peftsharp_schema; INSERT INTO peftsharp_schema (version) VALUES (@version)";
    /// <summary>Serializes concurrent first uses (four workers starting on an empty database migrate once).</summary>
    public const string LockMigrations = "SELECT pg_advisory_xact_lock(727385501)";
}
