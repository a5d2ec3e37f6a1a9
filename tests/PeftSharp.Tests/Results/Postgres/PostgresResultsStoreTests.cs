using Microsoft.Data.Sqlite;
using PeftSharp.Results;
using PeftSharp.Results.Postgres;
using static PeftSharp.Tests.Results.ResultsTestData;

namespace PeftSharp.Tests.Results.Postgres;

/// <summary>The PostgreSQL store keeps the SQLite store's contract, on the test server (scripts/test.sh starts it).</summary>
public sealed class PostgresResultsStoreTests : IDisposable
{
    readonly Lazy<TestPostgres> server = new(() => new TestPostgres());
    TestPostgres Server => server.Value;

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
    }

    [PostgresFact]
    public void A_finished_run_round_trips_with_bit_exact_logits()
    {
        var spec = Spec();
        var predictions = PredictionsWithOddLogits();
        long id;
        using (var store = ResultsStores.Open(Server.Url))
        {
            Assert.IsType<PostgresResultsStore>(store);
            id = store.BeginRun(spec, Context);
            store.FinishRun(id, Outcome(0.755, 4321), predictions);
        }
        using var reopened = PostgresResultsStore.Open(Server.Url);
        var run = reopened.TryGetFinished(spec.Key);
        Assert.NotNull(run);
        Assert.Equal((id, spec.Key, spec, Context, RunStatus.Finished), (run.Id, run.Key, run.Spec, run.Context, run.Status));
        Assert.Equal(Outcome(0.755, 4321), run.Outcome);
        Assert.Equal(DateTimeKind.Utc, run.StartedUtc.Kind);
        AssertSamePredictions(predictions, reopened.Predictions(id));
        Assert.Equal(run, reopened.TryGetRun(id));
    }

    [PostgresFact]
    public void The_schema_has_the_sqlite_tables_and_columns_and_its_version()
    {
        PostgresResultsStore.Open(Server.Url).Dispose();
        string sqlite = Path.Combine(TestFiles.TempDir(), "results.db");
        ResultsDb.Open(sqlite).Dispose();
        foreach (var table in new[] { "runs", "predictions", "sweeps", "sweep_queue", "run_artifacts" })
        {
            using var c = Raw(sqlite);
            using var command = c.CreateCommand();
            command.CommandText = $"SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('{table}') ORDER BY cid)";
            string expected = (string)command.ExecuteScalar()!;
            string actual = (string)Server.Sql($"SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '{table}'")!;
            Assert.Equal(expected, actual);
        }
        Assert.Equal(ResultsDb.SchemaVersion, Convert.ToInt32(Server.Sql("SELECT max(version) FROM peftsharp_schema")));
        SqliteConnection.ClearAllPools();
    }

    [PostgresFact]
    public void Workers_opening_an_empty_database_together_migrate_it_once()
    {
        var opened = Enumerable.Range(0, 4).AsParallel().WithDegreeOfParallelism(4)
                               .Select(_ => { using var s = PostgresResultsStore.Open(Server.Url); return s.Runs().Count; }).ToList();
        Assert.All(opened, count => Assert.Equal(0, count));
        Assert.Equal(1L, Convert.ToInt64(Server.Sql("SELECT count(*) FROM peftsharp_schema")));
    }

    [PostgresFact]
    public void BeginRun_replaces_an_unfinished_attempt_and_refuses_a_finished_key()
    {
        using var store = PostgresResultsStore.Open(Server.Url);
        long crashed = store.BeginRun(Spec(), Context);
        long retry = store.BeginRun(Spec(), Context);
        Assert.NotEqual(crashed, retry);
        Assert.Null(store.TryGetRun(crashed));
        Assert.Throws<InvalidOperationException>(() => store.FinishRun(crashed, Outcome(), Predictions(0, 3, 3)));
        store.FinishRun(retry, Outcome(), Predictions(0, 3, 3));
        Assert.Throws<InvalidOperationException>(() => store.BeginRun(Spec(), Context));
        Assert.False(store.FailRun(retry, "too late"));
    }

    [PostgresFact]
    public void A_FinishRun_that_fails_midway_stores_nothing()
    {
        using var store = PostgresResultsStore.Open(Server.Url);
        long id = store.BeginRun(Spec(), Context);
        var predictions = Predictions(0, 10, 4);
        predictions[6] = predictions[6] with { Index = 2 };   // a duplicate example: the insert fails after six rows
        Assert.ThrowsAny<Exception>(() => store.FinishRun(id, Outcome(), predictions));
        Assert.Equal(RunStatus.Running, store.TryGetRun(id)!.Status);
        Assert.Empty(store.Predictions(id));
        store.FinishRun(id, Outcome(), Predictions(0, 10, 4));
        Assert.Equal(10, store.Predictions(id).Count);
    }

    [PostgresFact]
    public void Filters_and_the_best_search_run_give_what_sqlite_gives()
    {
        string sqlite = Path.Combine(TestFiles.TempDir(), "results.db");
        using var lite = ResultsDb.Open(sqlite);
        using var store = PostgresResultsStore.Open(Server.Url);
        var outcomes = new (RunSpec Spec, double Top1)[]
        {
            (Spec(1, "dtd", "lora", "s1") with { Lr = 1e-2 }, 0.8), (Spec(2, "dtd", "lora", "s1"), 0.8),
            (Spec(16, "dtd", "lora", "s1"), 0.8), (Spec(3, "dtd", "bitfit", "s1"), 0.4), (Spec(4, "Pets", "lora", "s1"), 0.3),
            (Spec(5, "dtd", "lora", "s2"), 0.2), (Spec(6, "dtd", "lora", null), 0.1), (Spec(7, "dtd", "lora", "s1") with { Stage = RunStage.Final }, 0.99),
        };
        foreach (var s in new IResultsStore[] { lite, store })
            foreach (var (spec, top1) in outcomes) s.FinishRun(s.BeginRun(spec, Context), Outcome(top1), Predictions(0, 2, 2));

        string Keys(IEnumerable<RunRecord> runs) => string.Join(",", runs.Select(r => r.Key[..8]));
        Assert.Equal(Keys(lite.BestSearchRuns()), Keys(store.BestSearchRuns()));
        Assert.Equal(Keys(lite.Runs(new RunFilter(Dataset: "dtd", Stage: RunStage.Search, SweepId: "s1"))),
                     Keys(store.Runs(new RunFilter(Dataset: "dtd", Stage: RunStage.Search, SweepId: "s1"))));
        Assert.Equal(lite.BestSearchRun("dtd", "lora", "s1")!.Key, store.BestSearchRun("dtd", "lora", "s1")!.Key);
        Assert.Equal(RunExport.ToTable(lite.Runs()), RunExport.ToTable(store.Runs()));   // the same export (the table has no timestamps)
        SqliteConnection.ClearAllPools();
    }

    [PostgresFact]
    public void A_newer_schema_is_a_user_error()
    {
        PostgresResultsStore.Open(Server.Url).Dispose();
        Server.Sql("UPDATE peftsharp_schema SET version = 99");
        var e = Assert.Throws<PeftSharpException>(() => PostgresResultsStore.Open(Server.Url));
        Assert.Contains("schema version 99 is newer", e.Message);
        Assert.DoesNotContain(Server.Password, e.Message);
    }

    [PostgresFact]
    public void Another_programs_runs_table_is_a_user_error()
    {
        Server.Sql("CREATE TABLE runs (x INTEGER)");
        var e = Assert.Throws<PeftSharpException>(() => PostgresResultsStore.Open(Server.Url));
        Assert.Contains("another program", e.Message);
    }

    [PostgresFact]
    public void Wrong_credentials_a_missing_database_and_no_server_are_user_errors_without_the_password()
    {
        string wrong = $"postgres://{Server.User}:not-the-password-42@{Server.Host}:{Server.Port}/{Server.Database}";
        var auth = Assert.Throws<PeftSharpException>(() => ResultsStores.Open(wrong));
        Assert.Contains("authentication failed", auth.Message);
        string missing = $"Host={Server.Host};Port={Server.Port};Username={Server.User};Password={Server.Password};Database=no_such_db_here";
        var none = Assert.Throws<PeftSharpException>(() => ResultsStores.Open(missing));
        Assert.Contains("no such database", none.Message);
        var unreachable = Assert.Throws<PeftSharpException>(() => ResultsStores.Open("postgres://u:hunter2-secret@127.0.0.1:1/db"));
        Assert.Contains("cannot reach the PostgreSQL server", unreachable.Message);
        foreach (var e in new[] { auth, none, unreachable })
        {
            Assert.DoesNotContain("not-the-password-42", e.Message);
            Assert.DoesNotContain(Server.Password, e.Message);
            Assert.DoesNotContain("hunter2-secret", e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
    }
}

/// <summary>Choosing the store and hiding passwords, which needs no server.</summary>
public sealed class PostgresLocationTests
{
    [Theory]
    [InlineData("postgres://u:p@h:5432/db", true)]
    [InlineData("postgresql://h/db", true)]
    [InlineData("Host=h;Username=u;Database=db", true)]
    [InlineData("results.db", false)]
    [InlineData("/data/a=b/results.db", false)]
    [InlineData("./postgres/results.db", false)]
    public void The_db_argument_picks_the_store(string argument, bool postgres) => Assert.Equal(postgres, ResultsStores.IsPostgres(argument));

    [Theory]
    [InlineData("postgres://alice:s3cr%40t@db.example:6543/study?sslmode=disable", "postgres://alice@db.example:6543/study?sslmode=disable")]
    [InlineData("postgres://alice@db.example/study", "postgres://alice@db.example/study")]
    [InlineData("Host=db;Username=alice;Password=s3cr@t;Database=study", "Host=db;Username=alice;Database=study;Timeout=10;Application Name=peftsharp")]
    public void Passwords_never_show(string argument, string shown)
    {
        var location = PostgresLocation.Parse(argument);
        Assert.Equal(shown, location.Display);
        Assert.DoesNotContain("s3cr", location.Display);
        Assert.DoesNotContain("s3cr", ResultsStores.Describe(argument));
    }

    [Theory]
    [InlineData("postgres://alice:pw@db.example", "names no database")]
    [InlineData("postgres://alice:pw@db.example/x?nonsense=1", "not an Npgsql connection setting")]
    [InlineData("Host=db;Passwrd=pw", "not a valid Npgsql connection string")]
    public void A_bad_database_argument_is_a_user_error_without_the_password(string argument, string expected)
    {
        var e = Assert.Throws<PeftSharpException>(() => PostgresLocation.Parse(argument));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain(":pw", e.Message);
    }
}
