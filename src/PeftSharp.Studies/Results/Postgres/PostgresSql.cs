namespace PeftSharp.Results.Postgres;

/// <summary>What PostgreSQL needs beside <see cref="ResultsSql"/>: where the schema version is kept, and a lock so
/// that workers starting together on an empty database migrate it once.</summary>
internal static class PostgresSql
{
    public static readonly string[] Migrations = ResultsSql.Migrations(ResultsSql.Postgres);

    /// <summary>One row holding the schema version (PostgreSQL has no user_version pragma).</summary>
    public const string CreateVersionTable = "CREATE TABLE IF NOT EXISTS peftsharp_schema (version INTEGER NOT NULL)";
    // Read from the catalog table, not with to_regclass: its cached lookups may not yet see a table another worker
    // created while we waited for the migration lock.
    public const string VersionTableExists = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'peftsharp_schema')";
    public const string RunsTableExists = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'runs')";
    public const string ReadVersion = "SELECT max(version) FROM peftsharp_schema";
    public const string SetVersion = "DELETE FROM peftsharp_schema; INSERT INTO peftsharp_schema (version) VALUES (@version)";
    /// <summary>Serializes concurrent first uses (four workers starting on an empty database migrate once).</summary>
    public const string LockMigrations = "SELECT pg_advisory_xact_lock(727385501)";
}
