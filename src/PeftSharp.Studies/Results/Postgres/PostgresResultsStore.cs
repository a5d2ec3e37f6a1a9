using System.Data.Common;
using System.Net.Sockets;
using Npgsql;

namespace PeftSharp.Results.Postgres;

/// <summary>
/// The results store on a shared PostgreSQL database, for many workers on many hosts: the same schema, run keys and
/// crash-safety contract as the SQLite <see cref="ResultsDb"/>. The schema is created on first use (under an advisory
/// lock, so workers starting together migrate once); a newer schema, a server that cannot be reached and wrong
/// credentials are user errors that name the database without its password.
/// </summary>
public sealed class PostgresResultsStore : SqlResultsStore
{
    public const int SchemaVersion = ResultsDb.SchemaVersion;
    const int MaxWriteAttempts = 5;
    const string SerializationFailure = "40001", DeadlockDetected = "40P01";

    readonly PostgresLocation location;

    PostgresResultsStore(PostgresLocation location, NpgsqlConnection connection) : base(connection) => this.location = location;

    public override string Location => location.Display;
    public override string? LocalFolder => null;
    internal override string NowMillisSql => "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";
    internal override string SkipLockedSql => "FOR UPDATE SKIP LOCKED";

    public static PostgresResultsStore Open(string dbArgument) => Open(PostgresLocation.Parse(dbArgument));

    public static PostgresResultsStore Open(PostgresLocation location)
    {
        var connection = new NpgsqlConnection(location.ConnectionString);
        try
        {
            connection.Open();
            var store = new PostgresResultsStore(location, connection);
            store.Initialize();
            return store;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            connection.Dispose();
            // The inner exception is dropped: Npgsql's messages and data may carry the connection string.
            throw new PeftSharpException(location.Redact($"{location.Display}: {Explain(e, location)}"));
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>One line on why a connection or the schema check failed, with no password in it.</summary>
    static string Explain(Exception e, PostgresLocation location) => e switch
    {
        PostgresException { SqlState: "28P01" or "28000" } =>
            $"authentication failed for user '{location.Username}' (wrong user name or password, or no access from this host)",
        PostgresException { SqlState: "3D000" } p => $"no such database ({p.MessageText})",
        PostgresException p => $"PostgreSQL refused the connection: {location.Redact(p.MessageText)}",
        NpgsqlException when e.Message.Contains("No password has been provided", StringComparison.Ordinal) =>
            "the server wants a password and none was given (in the URL, PGPASSWORD or ~/.pgpass)",
        _ when Root(e) is SocketException s => $"cannot reach the PostgreSQL server ({s.SocketErrorCode}: {location.Redact(s.Message)})",
        _ when Root(e) is TimeoutException => "cannot reach the PostgreSQL server (timed out)",
        _ => $"cannot open the results database ({location.Redact(e.Message.Split('\n')[0])})",
    };

    static Exception Root(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e;
    }

    // ---- schema --------------------------------------------------------------------------------------------------

    /// <summary>Runs in <see cref="Open"/>, before the instance is shared, so it needs no lock. An up-to-date
    /// schema costs two reads; anything else is decided under the migration lock, since another worker may be
    /// migrating this very moment.</summary>
    void Initialize()
    {
        if (VersionTableExists(null))
        {
            int version = ReadVersion(null);
            CheckNotNewer(version);
            if (version == SchemaVersion) return;
        }
        Migrate();
    }

    void Migrate() => Write(tx =>
    {
        Scalar(PostgresSql.LockMigrations, tx);
        if (!VersionTableExists(tx) && (bool)Scalar(PostgresSql.RunsTableExists, tx)!)
            throw new PeftSharpException($"{Location}: has a 'runs' table of another program, expected a PeftSharp results database (or an empty one)");
        Execute(PostgresSql.CreateVersionTable, tx);
        int version = ReadVersion(tx);
        CheckNotNewer(version);
        for (int v = version; v < SchemaVersion; v++) Execute(PostgresSql.Migrations[v], tx);
        Execute(PostgresSql.SetVersion, tx, ("@version", SchemaVersion));
        return 0;
    });

    bool VersionTableExists(DbTransaction? tx) => (bool)Scalar(PostgresSql.VersionTableExists, tx)!;

    int ReadVersion(DbTransaction? tx) => Scalar(PostgresSql.ReadVersion, tx) is { } v ? Convert.ToInt32(v) : 0;

    void CheckNotNewer(int version)
    {
        if (version > SchemaVersion)
            throw new PeftSharpException($"{Location}: results schema version {version} is newer than this PeftSharp supports ({SchemaVersion}); use a newer PeftSharp");
    }

    // ---- artefacts: one row per content hash ------------------------------------------------------------------------

    protected override void StoreContentRow(string sha256, byte[] content, DbTransaction tx) =>
        Execute(ResultsSql.InsertArtifactContent, tx, ("@sha256", sha256), ("@content", content));

    protected override byte[] LoadContent(string sha256) =>
        Query(ResultsSql.SelectArtifactContent, r => (byte[])r.GetValue(0), ("@sha256", sha256)).SingleOrDefault()
        ?? throw new PeftSharpException($"{DescribeContent(sha256)}: artefact content missing");

    protected override string DescribeContent(string sha256) => $"{Location} artifact_content {sha256}";

    // ---- plumbing ------------------------------------------------------------------------------------------------

    /// <summary>A READ COMMITTED transaction, retried whole on a serialization failure or deadlock.</summary>
    protected override T RunWriteTransaction<T>(DbConnection connection, Func<DbTransaction, T> body)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                using var tx = connection.BeginTransaction();
                T result = body(tx);
                tx.Commit();
                return result;
            }
            catch (PostgresException e) when (e.SqlState is SerializationFailure or DeadlockDetected && attempt < MaxWriteAttempts)
            {
                Thread.Sleep(Random.Shared.Next(20, 100) * attempt);
            }
        }
    }
}
