using PeftSharp.Results;
using PeftSharp.Tests.Cli;
using static PeftSharp.Tests.Results.ResultsTestData;

namespace PeftSharp.Tests.Results;

/// <summary>The results table: readable in a pipe, chosen columns, hyperparameters, eval runs, one format per column.</summary>
public sealed class ResultsTableTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-table");
    string DbPath => Path.Combine(dir, "results.db");

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    const string LongHypers = """{"lora": {"alpha": 8, "dropout": 0.1, "rank": 8, "rslora": false, "targets": "q,k,v,proj,fc1,fc2"}}""";

    /// <summary>Two search runs differing in lr only by format-prone values, and an evaluation that trained nothing.</summary>
    List<RunRecord> Fill(SqlResultsStore db)
    {
        long Finish(RunSpec spec)
        {
            long id = db.BeginRun(spec, Context);
            db.FinishRun(id, Outcome(0.625), Predictions(0, 4, 2));
            return id;
        }
        Finish(Spec(1) with { HyperJson = LongHypers, Lr = 0.000114 });
        Finish(Spec(2) with { HyperJson = LongHypers, Lr = 3.93e-05 });
        Finish(Spec(3) with { Stage = RunStage.Single, TrainSplit = "none", EvalSplit = "test", Epochs = 0, Lr = 0, SweepId = null });
        return db.Runs().ToList();
    }

    static string[] Column(string table, string header)
    {
        var lines = table.TrimEnd('\n').Split('\n');
        int end = lines[0].IndexOf(header, StringComparison.Ordinal) + header.Length;   // numbers end under their header
        int start = lines[1].LastIndexOf(' ', end - 1) + 1;
        return lines.Skip(2).Select(l => l[start..end].Trim()).ToArray();
    }

    [Fact]
    public void Each_number_column_has_one_format()
    {
        using var db = ResultsDb.Open(DbPath);
        string table = RunExport.ToTable(Fill(db), ["id", "lr", "wd", "top1"]);
        Assert.Equal(new[] { "1.14e-04", "3.93e-05", "0.00e+00" }, Column(table, "lr"));
        Assert.Equal(new[] { "1.00e-04", "1.00e-04", "1.00e-04" }, Column(table, "wd"));
        Assert.Equal(new[] { "62.50", "62.50", "62.50" }, Column(table, "top1 %"));
    }

    [Theory]
    [InlineData("""{"lora": {"alpha": 8, "rank": 8, "targets": "q,v"}}""", "alpha=8 rank=8 targets=q,v")]
    [InlineData("""{"lora": {"rank": 4}, "ssf": {}}""", "lora.rank=4")]
    [InlineData("""{"vpt-deep": {"tokens": 10}, "lora": {"rank": 2, "dims": [1, 2]}}""", "lora.dims=[1,2] lora.rank=2 vpt-deep.tokens=10")]
    [InlineData("""{"rank": 8, "alpha": 16}""", "alpha=16 rank=8")]
    [InlineData("""{"linear": {}}""", "")]
    public void The_hyper_column_is_compact(string json, string expected) =>
        Assert.Equal(expected, RunExport.CompactHypers(CanonicalJson.NormalizeObject(json, "test")));

    [Fact]
    public void An_evaluation_that_trained_nothing_shows_stage_eval()
    {
        using var db = ResultsDb.Open(DbPath);
        var runs = Fill(db);
        Assert.Equal(new[] { "search", "search", "eval" }, runs.Select(RunExport.StageOf));
        Assert.Equal(new[] { "search", "search", "eval" }, RunExport.ToTable(runs, ["stage"]).TrimEnd('\n').Split('\n').Skip(2));
    }

    [Fact]
    public void Columns_are_chosen_by_name_and_an_unknown_one_is_an_error_listing_them()
    {
        using var db = ResultsDb.Open(DbPath);
        var lines = RunExport.ToTable(Fill(db), ["top1", "id", "hyper"]).Split('\n');
        Assert.Equal("top1 %  id  hyper", lines[0].TrimEnd());
        var e = Assert.Throws<PeftSharpException>(() => RunExport.ToTable([], ["id", "accuracy"]));
        Assert.Contains("unknown column 'accuracy', expected one of id, dataset, stage", e.Message);
    }

    // ---- through the CLI, output piped ----------------------------------------------------------------------------

    [Fact]
    public void Piped_results_are_one_unwrapped_line_per_run_with_hyperparameters()
    {
        using (var db = ResultsDb.Open(DbPath)) Fill(db);
        var r = CliRunner.Run("results", "--db", DbPath);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(2 + 3 + 1, lines.Length);   // header, rule, three runs, the count
        Assert.StartsWith("id", lines[0]);
        Assert.True(lines[2].Length > 80, "the test needs a row wider than a terminal");
        Assert.Contains("alpha=8 dropout=0.1 rank=8 rslora=false targets=q,k,v,proj,fc1,fc2", lines[2]);
        Assert.Contains("1.14e-04", lines[2]);
        Assert.Contains("3.93e-05", lines[3]);
        Assert.Matches(@"^\s*3\s+dtd\s+eval\s", lines[4]);
        Assert.Equal("3 run(s)", lines[5]);
        Assert.DoesNotContain("│", r.Stdout);
    }

    [Fact]
    public void The_columns_option_picks_the_columns_and_rejects_unknown_ones()
    {
        using (var db = ResultsDb.Open(DbPath)) Fill(db);
        var r = CliRunner.Run("results", "--db", DbPath, "--columns", "id,stage,lr");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n');
        Assert.Equal("id  stage         lr", lines[0].TrimEnd());
        Assert.Equal(" 3  eval    0.00e+00", lines[4]);
        var bad = CliRunner.Run("results", "--db", DbPath, "--columns", "id,speed");
        Assert.Equal(2, bad.ExitCode);
        CliRunner.AssertOneLineError(bad, "unknown column 'speed'");
    }

    // ---- results export ---------------------------------------------------------------------------------------

    [Fact]
    public void Export_writes_a_stored_adapter_and_states_its_size()
    {
        long id;
        string folder = Path.Combine(dir, "adapter");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), "{\"format\": \"peftsharp-adapter\"}");
        File.WriteAllBytes(Path.Combine(folder, "adapter_model.safetensors"), new byte[3000]);
        using (var db = ResultsDb.Open(DbPath))
        {
            id = db.BeginRun(Spec(), Context);
            db.FinishRun(id, Outcome(), Predictions(0, 2, 2));
            db.PutArtifact(id, RunArtifacts.Adapter, RunArtifacts.PackFolder(folder));
        }
        string target = Path.Combine(dir, "exported");
        var r = CliRunner.Run("results", "export", $"{id}", "--adapter", target, "--db", DbPath);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Matches($@"^run {id}: adapter \(lora, \d+ B, sha256 [0-9a-f]{{12}}\) written to {System.Text.RegularExpressions.Regex.Escape(target)}\n$", r.Stdout);
        Assert.Equal(new byte[3000], File.ReadAllBytes(Path.Combine(target, "adapter_model.safetensors")));
    }

    [Fact]
    public void Export_errors_are_one_line_each()
    {
        long running, failed, finished;
        using (var db = ResultsDb.Open(DbPath))
        {
            running = db.BeginRun(Spec(1), Context);
            failed = db.BeginRun(Spec(2), Context);
            db.FailRun(failed, "boom");
            finished = db.BeginRun(Spec(3), Context);
            db.FinishRun(finished, Outcome(), Predictions(0, 2, 2));
        }
        CliRunner.Result Export(string id) => CliRunner.Run("results", "export", id, "--adapter", Path.Combine(dir, "out"), "--db", DbPath);
        CliRunner.AssertOneLineError(Export("99"), "no run 99");
        CliRunner.AssertOneLineError(Export($"{running}"), $"run {running} is running, not finished");
        CliRunner.AssertOneLineError(Export($"{failed}"), $"run {failed} is failed, not finished");
        var none = Export($"{finished}");
        Assert.Equal(2, none.ExitCode);
        CliRunner.AssertOneLineError(none, $"run {finished} (lora) has no stored weights (trained with --keep-weights none");
        CliRunner.AssertOneLineError(Export("x"), "expected a run id");
        CliRunner.AssertOneLineError(CliRunner.Run("results", "export", $"{finished}", "--db", DbPath), "expected --adapter DIR");
        Assert.False(Directory.Exists(Path.Combine(dir, "out")));
    }
}
