using System.Reflection;
using Npgsql;
using PeftSharp.Results;
using PeftSharp.Results.Postgres;
using PeftSharp.Tests.Cli;

namespace PeftSharp.Tests.Results.Postgres;

/// <summary>A password in a --db URL may hold any character; it is parsed whole and never shown, not even in part.
/// Every password here is made of "pw" tokens, so any fragment of it in a message is caught.</summary>
public sealed class PasswordRedactionTests
{
    public static TheoryData<string, string, string, string, int?, string> Urls => new()
    {
        // url, expected password, shown as, host, port, database
        { "postgres://user:pw@pwss@db.example/study", "pw@pwss", "postgres://user@db.example/study", "db.example", null, "study" },
        { "postgres://alice:pw1:pw2@db.example:6543/study", "pw1:pw2", "postgres://alice@db.example:6543/study", "db.example", 6543, "study" },
        { "postgres://alice:pw/pwx/pw@127.0.0.1:5433/study", "pw/pwx/pw", "postgres://alice@127.0.0.1:5433/study", "127.0.0.1", 5433, "study" },
        { "postgres://alice:100%pw@db.example/study", "100%pw", "postgres://alice@db.example/study", "db.example", null, "study" },
        { "postgres://alice:pw%40pw%3Apw@db.example/study", "pw@pw:pw", "postgres://alice@db.example/study", "db.example", null, "study" },
        { "postgresql://bob:@pw:/%pw@@db.example/study?sslmode=disable", "@pw:/%pw@", "postgresql://bob@db.example/study?sslmode=disable", "db.example", null, "study" },
    };

    static NpgsqlConnectionStringBuilder Parsed(PostgresLocation location) =>
        new((string)typeof(PostgresLocation).GetProperty("ConnectionString", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(location)!);

    [Theory]
    [MemberData(nameof(Urls))]
    public void The_whole_password_is_parsed_and_nothing_of_it_is_shown(string url, string password, string shown, string host, int? port, string database)
    {
        var location = PostgresLocation.Parse(url);
        var builder = Parsed(location);
        Assert.Equal((password, host, port ?? 5432, database), (builder.Password, builder.Host, builder.Port, builder.Database));
        Assert.Equal(shown, location.Display);
        foreach (string text in new[] { location.Display, location.ToString(), ResultsStores.Describe(url), PostgresLocation.RedactUrl(url),
                                        PostgresLocation.RedactMessage(url), PostgresLocation.RedactMessage($"cannot connect to {url} now"),
                                        location.Redact($"server said: password {password} rejected") })
            Assert.DoesNotContain("pw", text);
    }

    [Theory]
    [InlineData("postgres://alice:pw@pw:x@127.0.0.1:1/study?nonsense=1", "not an Npgsql connection setting")]
    [InlineData("postgres://alice:pw@pw/pw@db.example", "names no database")]
    [InlineData("postgres://alice:pw@pw@db.example:99999/study", "port '99999'")]
    [InlineData("Host=db;Username=alice;Password=\"pw;pw@pw\";Passwrd=x", "not a valid Npgsql connection string")]
    public void A_bad_argument_is_an_error_without_the_password(string argument, string expected)
    {
        var e = Assert.Throws<PeftSharpException>(() => PostgresLocation.Parse(argument));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("pw", e.Message);
        Assert.DoesNotContain("--db", e.Message);   // the library does not name CLI options
    }

    [Fact]
    public void A_connection_to_a_closed_port_is_an_error_line_without_the_password()
    {
        var e = Assert.Throws<PeftSharpException>(() => ResultsStores.Open("postgres://alice:pw@pw:pw/pw%pw@127.0.0.1:1/study"));
        Assert.StartsWith("postgres://alice@127.0.0.1:1/study: cannot reach the PostgreSQL server", e.Message);
        Assert.DoesNotContain("pw", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.Null(e.InnerException);   // Npgsql's exception and its data may carry the connection string

        var cli = CliRunner.Run("results", "--db", "postgres://alice:pw@pw:pw/pw%pw@127.0.0.1:1/study");
        Assert.Equal(2, cli.ExitCode);
        CliRunner.AssertOneLineError(cli, "postgres://alice@127.0.0.1:1/study: cannot reach the PostgreSQL server");
        Assert.DoesNotContain("pw", cli.Stdout + cli.Stderr);
    }
}
