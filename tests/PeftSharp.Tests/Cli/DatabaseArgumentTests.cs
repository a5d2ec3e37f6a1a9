using PeftSharp.Tests.Results.Postgres;

namespace PeftSharp.Tests.Cli;

/// <summary>A database the CLI cannot use gets one line naming it, without its password, and exit code 2.</summary>
public sealed class DatabaseArgumentTests : IDisposable
{
    readonly Lazy<TestPostgres> server = new(() => new TestPostgres());

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
    }

    static void AssertUserError(CliRunner.Result r, string expected, string secret)
    {
        Assert.Equal(2, r.ExitCode);
        CliRunner.AssertOneLineError(r, expected);
        Assert.DoesNotContain(secret, r.Stderr + r.Stdout);
    }

    [Fact]
    public void An_unreachable_server_is_one_line_and_exit_2()
    {
        var r = CliRunner.Run("sweep", "status", "--db", "postgres://alice:hunter2-secret@127.0.0.1:1/study");
        AssertUserError(r, "postgres://alice@127.0.0.1:1/study: cannot reach the PostgreSQL server", "hunter2-secret");
    }

    [PostgresFact]
    public void Wrong_credentials_are_one_line_and_exit_2()
    {
        var s = server.Value;
        var r = CliRunner.Run("worker", "--db", $"Host={s.Host};Port={s.Port};Username={s.User};Password=wrong-pw-77;Database={s.Database}");
        AssertUserError(r, $"authentication failed for user '{s.User}'", "wrong-pw-77");
    }

    [PostgresFact]
    public void A_schema_from_a_newer_version_is_one_line_and_exit_2()
    {
        var s = server.Value;
        Assert.Equal(0, CliRunner.Run("results", "--db", s.Url).ExitCode);   // creates the schema
        s.Sql("UPDATE peftsharp_schema SET version = 99");
        var r = CliRunner.Run("results", "--db", s.Url);
        AssertUserError(r, "results schema version 99 is newer than this PeftSharp supports", s.Password);
    }

    [Fact]
    public void A_url_without_a_database_and_an_unknown_sweep_action_are_one_line()
    {
        var r = CliRunner.Run("sweep", "status", "--db", "postgres://alice:pw-in-url@db.example");
        AssertUserError(r, "the URL names no database", "pw-in-url");
        var unknown = CliRunner.Run("sweep", "launch");
        CliRunner.AssertOneLineError(unknown, "unknown action 'launch', expected plan, status or slurm");
    }
}
