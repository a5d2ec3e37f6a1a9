using Microsoft.Data.Sqlite;
using PeftSharp.Results;
using PeftSharp.Results.Postgres;
using PeftSharp.Tests.Results.Postgres;
using PeftSharp.Training;
using static PeftSharp.Tests.Results.ResultsTestData;

namespace PeftSharp.Tests.Results;

/// <summary>The one selection rule: the in-process protocol, SQLite and PostgreSQL pick the same configuration on ties.</summary>
public sealed class BestConfigurationTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-best");
    readonly Lazy<TestPostgres> server = new(() => new TestPostgres());

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    static RunSpec Point(string targets, double lr, double wd) => Spec() with
    {
        HyperJson = $$$"""{"lora": {"rank": 8, "targets": "{{{targets}}}"}}""", Lr = lr, WeightDecay = wd,
    };

    /// <summary>Inserted so that the row order (ids) is the reverse of the rule's: whichever engine fell back to row
    /// order or to a locale's collation would pick another run. "aB" sorts before "a_b" byte-wise ('B' 0x42 &lt; '_'
    /// 0x5F) but after it in en_US (which ignores '_' and puts lower case first).</summary>
    static readonly (RunSpec Spec, double Top1)[] Ties =
    [
        (Point("a_b", 1e-3, 1e-4), 0.75),
        (Point("aB", 1e-3, 1e-4), 0.75),      // the rule's choice: top-1, lr and wd tie; "aB" < "a_b" byte-wise
        (Point("Ab", 1e-3, 1e-3), 0.75),      // higher wd
        (Point("AB", 1e-2, 0), 0.75),         // higher lr
        (Point("zz", 1e-4, 0), 0.5),          // lower top-1
    ];

    static string Choice(IResultsStore store)
    {
        foreach (var (spec, top1) in Ties) store.FinishRun(store.BeginRun(spec, Context), Outcome(top1), Predictions(0, 2, 2));
        string inProcess = StudyProtocol.Best(store.Runs(new RunFilter(Stage: RunStage.Search)))!.Key;
        Assert.Equal(inProcess, store.BestSearchRun("dtd", "lora", "sweep-1")!.Key);
        Assert.Equal(inProcess, store.BestSearchRuns().Single().Key);
        return inProcess;
    }

    [Fact]
    public void In_process_and_sqlite_pick_the_same_configuration_on_ties()
    {
        using var lite = ResultsDb.Open(Path.Combine(dir, "r.db"));
        Assert.Equal(Ties[1].Spec.Key, Choice(lite));
        Assert.Equal("top1 DESC, lr ASC, weight_decay ASC, hyper_json ASC", BestConfiguration.OrderBySql());
    }

    [PostgresFact]
    public void Postgres_picks_what_sqlite_and_the_protocol_pick_on_ties()
    {
        using var store = PostgresResultsStore.Open(server.Value.Url);
        Assert.Equal(Ties[1].Spec.Key, Choice(store));
    }
}
