using Npgsql;

namespace PeftSharp.Tests.Results.Postgres;

/// <summary>
/// The PostgreSQL server the tests use: PEFTSHARP_TEST_POSTGRES names it (scripts/test.sh starts one on 127.0.0.1
/// and sets it). Each test gets a database of its own, dropped afterwards.
/// </summary>
public sealed class TestPostgres : IDisposable
{
    public const string Variable = "PEFTSHARP_TEST_POSTGRES";

    readonly NpgsqlConnectionStringBuilder admin;

    /// <summary>A fresh, empty database on the test server; <see cref="Url"/> names it.</summary>
    public TestPostgres()
    {
        string? url = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrWhiteSpace(url))
            throw new InvalidOperationException($"{Variable} is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL and sets it");
        var uri = new Uri(url);
        string[] user = uri.UserInfo.Split(':', 2);
        admin = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host, Port = uri.Port, Username = Uri.UnescapeDataString(user[0]),
            Password = user.Length > 1 ? Uri.UnescapeDataString(user[1]) : null, Database = uri.AbsolutePath.TrimStart('/'), Pooling = false,
        };
        Database = $"peftsharp_t_{Guid.NewGuid():N}"[..30];
        Admin($"CREATE DATABASE {Database}");
        Url = $"postgres://{Uri.EscapeDataString(admin.Username!)}:{Uri.EscapeDataString(admin.Password ?? "")}@{admin.Host}:{admin.Port}/{Database}";
    }

    public string Database { get; }
    public string Url { get; }
    public string Password => admin.Password ?? "";
    public string Host => admin.Host!;
    public int Port => admin.Port;
    public string User => admin.Username!;

    /// <summary>Runs SQL in the test's database (to set up states the store itself never writes).</summary>
    public object? Sql(string sql)
    {
        using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(admin.ConnectionString) { Database = Database }.ConnectionString);
        connection.Open();
        using var command = new NpgsqlCommand(sql, connection);
        return command.ExecuteScalar();
    }

    void Admin(string sql)
    {
        using var connection = new NpgsqlConnection(admin.ConnectionString);
        connection.Open();
        using var command = new NpgsqlCommand(sql, connection);
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        NpgsqlConnection.ClearAllPools();
        try { Admin($"DROP DATABASE IF EXISTS {Database} WITH (FORCE)"); }
        catch (NpgsqlException) { }   // a leftover test database must not fail a test
    }

    /// <summary>Why PostgreSQL tests cannot run here, or null when they can. Under CI=true they always run (and fail
    /// loudly without a server), so a missing server can never pass silently there.</summary>
    public static string? Unavailable { get; } = Probe();

    static string? Probe()
    {
        if (Environment.GetEnvironmentVariable("CI") == "true") return null;
        string? url = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrWhiteSpace(url))
            return $"PostgreSQL tests skipped: {Variable} is not set (./scripts/test.sh starts a local server and sets it)";
        try
        {
            using var probe = new TestPostgres();
            return null;
        }
        catch (Exception e)
        {
            return $"PostgreSQL tests skipped: the server in {Variable} is not reachable ({e.Message.Split('\n')[0]})";
        }
    }
}

/// <summary>A fact that needs the test PostgreSQL server: skipped with the reason outside CI when there is none.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute()
    {
        if (TestPostgres.Unavailable is { } reason) Skip = reason;
    }
}
