using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Data.Sqlite;

namespace PeftSharp.Results;

/// <summary>
/// The SQLite file that records every training run and the per-example predictions of its evaluation (the embedded
/// default store; <see cref="Postgres.PostgresResultsStore"/> is the shared one).
/// Crash safety: a run is inserted as 'running' by <see cref="SqlResultsStore.BeginRun"/> and becomes 'finished' only
/// in the single transaction of <see cref="SqlResultsStore.FinishRun"/> that also stores its predictions, so a killed
/// process leaves either a complete result or a 'running' row, which counts as not finished and is replaced by the
/// next BeginRun of the same key.
/// Concurrency: WAL journal, a 30 s busy timeout, short IMMEDIATE write transactions (retried on SQLITE_BUSY), so
/// several processes can write to one file. A run begun with TryBeginRun holds a lease its owner renews while
/// training; another process asking for the same key is told who holds it and waits (RunExecutor), and takes the
/// run over only once the lease has run out.
/// Artefacts (a run's adapter) are files named by their SHA-256 in <see cref="ArtifactFolder"/>, beside the database.
/// </summary>
public sealed class ResultsDb : SqlResultsStore
{
    public const int SchemaVersion = 4;
    public const string DefaultFileName = "results.db";

    const int SqliteBusy = 5, SqliteLocked = 6, SqliteCorrupt = 11, SqliteNotADatabase = 26;
    const int MaxWriteAttempts = 5;
    static readonly string[] SqliteMigrations = ResultsSql.Migrations(ResultsSql.Sqlite);

    /// <summary>The path as given to <see cref="Open"/> (used in error messages).</summary>
    public string FilePath { get; }

    public override string Location => FilePath;
    public override string? LocalFolder => Path.GetDirectoryName(Path.GetFullPath(FilePath));

    /// <summary>Where artefact content lies: "&lt;database file&gt;.artifacts/&lt;sha256&gt;".</summary>
    public string ArtifactFolder => ArtifactFolderOf(FilePath);

    static string ArtifactFolderOf(string path) => Path.GetFullPath(path) + ".artifacts";
    internal override string NowMillisSql => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
    internal override string SkipLockedSql => "";   // the IMMEDIATE write transaction lets one claimer in at a time

    ResultsDb(string path, SqliteConnection connection) : base(connection) => FilePath = path;

    /// <summary>Opens (creating or migrating if needed) the results database at <paramref name="path"/>.</summary>
    public static ResultsDb Open(string path = DefaultFileName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new PeftSharpException($"{path}: is a folder, expected a results database file");
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        CheckWritable(path, full);

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

    /// <summary>Fails at open, before any training, when a run's result or weights could not be written: the file,
    /// its folder (SQLite creates its journal files there) or the artefact folder is not writable.</summary>
    static void CheckWritable(string path, string full)
    {
        string folder = Path.GetDirectoryName(full)!, artifacts = ArtifactFolderOf(path);
        if (File.Exists(full) && !WritableCheck.IsWritable(full))
            throw new PeftSharpException($"{path}: the results database is not writable (read-only file), expected a file PeftSharp can write");
        if (!WritableCheck.IsWritable(folder))
            throw new PeftSharpException($"{path}: the folder {folder} is not writable (SQLite keeps its journal beside the database), expected a writable folder");
        if (Directory.Exists(artifacts) && !WritableCheck.IsWritable(artifacts))
            throw new PeftSharpException($"{artifacts}: the artefact folder of {path} is not writable, expected a writable folder");
    }

    // ---- artefacts: one file per content hash --------------------------------------------------------------------

    /// <summary>Written to a temporary name and renamed, so a crash never leaves a half file under a hash.</summary>
    protected override void StoreContent(string sha256, byte[] content)
    {
        string file = Path.Combine(ArtifactFolder, sha256);
        try
        {
            if (File.Exists(file) && Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file))) == sha256) return;
            Directory.CreateDirectory(ArtifactFolder);
            string temporary = $"{file}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(temporary, content);
            File.Move(temporary, file, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PeftSharpException($"{ArtifactFolder}: cannot store an artefact of {FilePath} ({e.Message})", e);
        }
    }

    protected override byte[] LoadContent(string sha256)
    {
        string file = Path.Combine(ArtifactFolder, sha256);
        if (!File.Exists(file)) throw new PeftSharpException($"{file}: artefact file missing (the database names it; was the .artifacts folder moved?)");
        return File.ReadAllBytes(file);
    }

    protected override string DescribeContent(string sha256) => Path.Combine(ArtifactFolder, sha256);

    /// <summary>SQLite's integrity check: "ok", or the problems found, one per line.</summary>
    public string CheckIntegrity() => string.Join("\n", Query(ResultsSql.IntegrityCheck, r => r.GetString(0)));

    // ---- schema --------------------------------------------------------------------------------------------------

    /// <summary>Runs in <see cref="Open"/>, before the instance is shared, so it needs no lock.</summary>
    void Initialize()
    {
        Execute(ResultsSql.ConnectionPragmas, null);   // outside a transaction: foreign_keys is a no-op inside one
        int version = ReadVersion(null);   // the first read of the file: a non-database fails here
        // Version 0 is checked inside Migrate's write transaction: outside one, another process creating the schema
        // can commit between reading the version and counting the tables, and its fresh database looks foreign.
        if (version != 0) CheckVersion(version, null);
        if (version != SchemaVersion) Migrate();
        // WAL lets readers work while one process writes; the mode is stored in the file (set after the checks, so a
        // foreign database is left as it was).
        Execute(ResultsSql.WalMode, null);
    }

    void Migrate() => Write(tx =>
    {
        int version = ReadVersion(tx);   // another process may have migrated since we looked
        CheckVersion(version, tx);
        for (int v = version; v < SchemaVersion; v++) Execute(SqliteMigrations[v], tx);
        Execute(string.Format(CultureInfo.InvariantCulture, ResultsSql.SetUserVersion, SchemaVersion), tx);
        return 0;
    });

    int ReadVersion(DbTransaction? tx) => (int)(long)Scalar(ResultsSql.UserVersion, tx)!;

    void CheckVersion(int version, DbTransaction? tx)
    {
        if (version > SchemaVersion)
            throw new PeftSharpException($"{FilePath}: results schema version {version} is newer than this PeftSharp supports ({SchemaVersion}); use a newer PeftSharp");
        if (version < 0 || (version == 0 && (long)Scalar(ResultsSql.CountSchemaObjects, tx)! > 0))
            throw new PeftSharpException($"{FilePath}: a SQLite database of another program, expected a PeftSharp results database");
    }

    // ---- plumbing ------------------------------------------------------------------------------------------------

    /// <summary>
    /// An IMMEDIATE transaction (the write lock is taken up front, so it waits in the busy handler instead of failing
    /// on a read-to-write upgrade), retried whole if SQLite still reports the database busy.
    /// </summary>
    protected override T RunWriteTransaction<T>(DbConnection connection, Func<DbTransaction, T> body)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                using var tx = ((SqliteConnection)connection).BeginTransaction(deferred: false);
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
