using System.Diagnostics;
using PeftSharp.Results;
using static PeftSharp.Tests.Results.ResultsTestData;

namespace PeftSharp.Tests.Results;

public sealed class ResultsDbTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-results");
    string DbPath => Path.Combine(dir, "results.db");

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }   // a leftover temp folder must not fail a test
    }

    // ---- round trip ----------------------------------------------------------------------------------------------

    [Fact]
    public void A_finished_run_round_trips_with_bit_exact_logits()
    {
        var spec = Spec();
        var predictions = PredictionsWithOddLogits();
        var before = DateTime.UtcNow.AddSeconds(-1);
        long id;
        using (var db = ResultsDb.Open(DbPath))
        {
            id = db.BeginRun(spec, Context);
            db.FinishRun(id, Outcome(0.755, 4321), predictions);
        }

        using var reopened = ResultsDb.Open(DbPath);
        var run = reopened.TryGetFinished(spec.Key);
        Assert.NotNull(run);
        Assert.Equal(id, run.Id);
        Assert.Equal(spec.Key, run.Key);
        Assert.Equal(spec, run.Spec);
        Assert.Equal(Context, run.Context);
        Assert.Equal(RunStatus.Finished, run.Status);
        Assert.Equal(Outcome(0.755, 4321), run.Outcome);
        Assert.Null(run.Error);
        Assert.Equal(DateTimeKind.Utc, run.StartedUtc.Kind);
        Assert.InRange(run.StartedUtc, before, DateTime.UtcNow.AddSeconds(1));
        Assert.NotNull(run.FinishedUtc);
        Assert.InRange(run.FinishedUtc.Value, run.StartedUtc, DateTime.UtcNow.AddSeconds(1));
        AssertSamePredictions(predictions, reopened.Predictions(id));
        Assert.Equal(run, reopened.TryGetRun(id));
    }

    [Fact]
    public void The_file_uses_the_wal_journal_and_records_its_schema_version()
    {
        ResultsDb.Open(DbPath).Dispose();
        Assert.Equal("wal", RawScalar(DbPath, "PRAGMA journal_mode"));
        Assert.Equal((long)ResultsDb.SchemaVersion, RawScalar(DbPath, "PRAGMA user_version"));
        using var again = ResultsDb.Open(DbPath);   // reopening an up-to-date file migrates nothing
        Assert.Equal("ok", again.CheckIntegrity());
    }

    [Fact]
    public void Open_creates_missing_parent_folders()
    {
        string nested = Path.Combine(dir, "a", "b", "results.db");
        using var db = ResultsDb.Open(nested);
        Assert.True(File.Exists(nested));
    }

    // ---- keys ----------------------------------------------------------------------------------------------------

    [Fact]
    public void The_same_spec_gives_the_same_key()
    {
        Assert.Equal(Spec().Key, Spec().Key);
        Assert.Equal(Spec().Key, ResultsDb.KeyOf(Spec()));
        Assert.Matches("^[0-9a-f]{64}$", Spec().Key);
    }

    public static TheoryData<string> IdentityChanges() => new(IdentityMutations.Keys);

    static readonly Dictionary<string, Func<RunSpec, RunSpec>> IdentityMutations = new()
    {
        ["stage"] = s => s with { Stage = RunStage.Final },
        ["dataset"] = s => s with { Dataset = "cifar100" },
        ["train split"] = s => s with { TrainSplit = "train800val200" },
        ["eval split"] = s => s with { EvalSplit = "test" },
        ["method"] = s => s with { Method = "adapter" },
        ["hyper value"] = s => s with { HyperJson = s.HyperJson.Replace("\"rank\":8", "\"rank\":4") },
        ["hyper extra key"] = s => s with { HyperJson = s.HyperJson.Replace("{", "{\"dropout\": 0.1, ") },
        ["lr"] = s => s with { Lr = 1e-2 },
        ["weight decay"] = s => s with { WeightDecay = 1e-3 },
        ["seed"] = s => s with { Seed = 43 },
        ["epochs"] = s => s with { Epochs = 40 },
        ["batch size"] = s => s with { BatchSize = 32 },
        ["training"] = s => s with { TrainingJson = s.TrainingJson.Replace("0.1", "0.2") },
        ["model"] = s => s with { ModelJson = """{"preset": "vit-b16-clip"}""" },
        ["checkpoint"] = s => s with { Checkpoint = RunSpec.RandomInit },
        ["sweep id"] = s => s with { SweepId = "sweep-2" },
        ["no sweep id"] = s => s with { SweepId = null },
    };

    [Theory]
    [MemberData(nameof(IdentityChanges))]
    public void Changing_any_identity_field_changes_the_key(string field)
    {
        var changed = IdentityMutations[field](Spec());
        Assert.NotEqual(Spec(), changed);
        Assert.NotEqual(Spec().Key, changed.Key);
    }

    [Fact]
    public void Json_key_order_whitespace_and_number_spelling_do_not_change_the_key()
    {
        var spec = Spec();
        var respelled = spec with
        {
            HyperJson = """{ "targets":"qkv", "run":0.0,"alpha" : 1.6e1, "rank": 8 }""",
            TrainingJson = """{"warmup_epochs": 10, "drop_path": 1e-1, "label_smoothing": 0.0}""",
        };
        Assert.Equal(spec.HyperJson, respelled.HyperJson);
        Assert.Equal(spec.Key, respelled.Key);
        Assert.Equal("""{"alpha":16,"rank":8,"run":0,"targets":"qkv"}""", spec.HyperJson);
    }

    [Fact]
    public void Nested_json_objects_are_sorted_too()
    {
        var a = Spec() with { ModelJson = """{"preset": "x", "config": {"depth": 12, "dim": 768}}""" };
        var b = Spec() with { ModelJson = """{"config": {"dim": 768, "depth": 12}, "preset": "x"}""" };
        Assert.Equal("""{"config":{"depth":12,"dim":768},"preset":"x"}""", a.ModelJson);
        Assert.Equal(a.Key, b.Key);
    }

    [Theory]
    [InlineData("{\"rank\": ", "run spec 'hyper': not valid JSON")]
    [InlineData("[1, 2]", "run spec 'hyper': expected a JSON object, got a JSON array")]
    [InlineData("{\"rank\": 1, \"rank\": 2}", "duplicate key 'rank'")]
    public void Bad_hyperparameter_json_is_a_user_error(string json, string expected)
    {
        var e = Assert.Throws<PeftSharpException>(() => Spec() with { HyperJson = json });
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void An_invalid_spec_has_no_key()
    {
        Assert.Contains("'dataset'", Assert.Throws<PeftSharpException>(() => (Spec() with { Dataset = " " }).Key).Message);
        Assert.Contains("'lr'", Assert.Throws<PeftSharpException>(() => (Spec() with { Lr = double.NaN }).Key).Message);
        Assert.Contains("'batch size'", Assert.Throws<PeftSharpException>(() => (Spec() with { BatchSize = 0 }).Key).Message);
    }

    [Fact]
    public void Checkpoint_identity_is_the_file_name_and_its_sha256()
    {
        string file = Path.Combine(dir, "weights.safetensors");
        File.WriteAllText(file, "abc");
        Assert.Equal("weights.safetensors sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", PeftSharp.Checkpoints.CheckpointIdentity.Of(file));
        Assert.Equal("random-init", PeftSharp.Checkpoints.CheckpointIdentity.Of(null));
        Assert.Throws<PeftSharpException>(() => PeftSharp.Checkpoints.CheckpointIdentity.Of(Path.Combine(dir, "missing.safetensors")));
    }

    // ---- resumability --------------------------------------------------------------------------------------------

    [Fact]
    public void TryGetFinished_ignores_running_and_failed_runs()
    {
        using var db = ResultsDb.Open(DbPath);
        db.BeginRun(Spec(1), Context);
        long failed = db.BeginRun(Spec(2), Context);
        Assert.True(db.FailRun(failed, "out of memory"));
        long finished = db.BeginRun(Spec(3), Context);
        db.FinishRun(finished, Outcome(), Predictions(3, 4, 3));

        Assert.Null(db.TryGetFinished(Spec(1).Key));
        Assert.Null(db.TryGetFinished(Spec(2).Key));
        Assert.Equal(finished, db.TryGetFinished(Spec(3).Key)?.Id);
        Assert.Null(db.TryGetFinished(Spec(4).Key));
        var failedRow = db.TryGetRun(failed)!;
        Assert.Equal(RunStatus.Failed, failedRow.Status);
        Assert.Equal("out of memory", failedRow.Error);
        Assert.Null(failedRow.Outcome);
        Assert.NotNull(failedRow.FinishedUtc);
    }

    [Fact]
    public void BeginRun_after_a_crash_replaces_the_row_left_running()
    {
        var spec = Spec();
        long crashed;
        using (var first = ResultsDb.Open(DbPath))
            crashed = first.BeginRun(spec, Context);   // the process "dies" here: the row stays running

        using var db = ResultsDb.Open(DbPath);
        Assert.Equal(RunStatus.Running, db.TryGetRun(crashed)?.Status);
        Assert.Null(db.TryGetFinished(spec.Key));
        long retry = db.BeginRun(spec, Context);
        db.FinishRun(retry, Outcome(), Predictions(0, 5, 3));

        var rows = db.Runs().Where(r => r.Key == spec.Key).ToList();
        Assert.Equal(retry, Assert.Single(rows).Id);
        Assert.Equal(RunStatus.Finished, rows[0].Status);
        // The dead attempt cannot write over its successor.
        var e = Assert.Throws<InvalidOperationException>(() => db.FinishRun(crashed, Outcome(), Predictions(0, 5, 3)));
        Assert.Contains("replaced", e.Message);
        Assert.Equal(5, db.Predictions(retry).Count);
        Assert.Empty(db.Predictions(crashed));
    }

    [Fact]
    public void BeginRun_replaces_a_failed_attempt()
    {
        using var db = ResultsDb.Open(DbPath);
        long failed = db.BeginRun(Spec(), Context);
        db.FailRun(failed, "diverged");
        long retry = db.BeginRun(Spec(), Context);
        Assert.NotEqual(failed, retry);
        Assert.Null(db.TryGetRun(failed));
        Assert.Single(db.Runs());
    }

    [Fact]
    public void BeginRun_refuses_a_key_that_already_finished()
    {
        using var db = ResultsDb.Open(DbPath);
        long id = db.BeginRun(Spec(), Context);
        db.FinishRun(id, Outcome(), Predictions(0, 3, 3));
        Assert.Throws<InvalidOperationException>(() => db.BeginRun(Spec(), Context));
        Assert.Equal(RunStatus.Finished, db.TryGetRun(id)?.Status);
    }

    [Fact]
    public void Finishing_or_failing_a_run_twice_is_refused()
    {
        using var db = ResultsDb.Open(DbPath);
        long id = db.BeginRun(Spec(), Context);
        db.FinishRun(id, Outcome(0.25), Predictions(0, 3, 3));
        var e = Assert.Throws<InvalidOperationException>(() => db.FinishRun(id, Outcome(0.75), Predictions(0, 3, 3)));
        Assert.Contains("finished", e.Message);
        Assert.False(db.FailRun(id, "late failure"));
        var run = db.TryGetRun(id)!;
        Assert.Equal(0.25, run.Top1);
        Assert.Equal(RunStatus.Finished, run.Status);
        Assert.Null(run.Error);
    }

    // ---- atomicity -----------------------------------------------------------------------------------------------

    public static TheoryData<string> BadPredictions() => new() { "null logits", "wrong logit count", "duplicate example", "null prediction" };

    [Theory]
    [MemberData(nameof(BadPredictions))]
    public void A_FinishRun_that_fails_midway_stores_nothing(string defect)
    {
        using var db = ResultsDb.Open(DbPath);
        long id = db.BeginRun(Spec(), Context);
        var predictions = Predictions(0, 10, 4);
        switch (defect)
        {
            case "null logits": predictions[6] = predictions[6] with { Logits = null! }; break;
            case "wrong logit count": predictions[6] = predictions[6] with { Logits = new float[5] }; break;
            case "duplicate example": predictions[6] = predictions[6] with { Index = 2 }; break;
            case "null prediction": predictions[6] = null!; break;
        }

        Assert.ThrowsAny<Exception>(() => db.FinishRun(id, Outcome(), predictions));

        // Six predictions were inserted before the bad one; the rollback must have taken them out again.
        Assert.Equal(0L, RawScalar(DbPath, "SELECT count(*) FROM predictions"));
        var run = db.TryGetRun(id)!;
        Assert.Equal(RunStatus.Running, run.Status);
        Assert.Null(run.Outcome);
        Assert.Equal(DBNull.Value, RawScalar(DbPath, "SELECT top1 FROM runs"));
        Assert.Null(db.TryGetFinished(Spec().Key));

        // The same run can still finish properly afterwards.
        db.FinishRun(id, Outcome(), Predictions(0, 10, 4));
        Assert.Equal(10, db.Predictions(id).Count);
    }

    [Fact]
    public void An_invalid_outcome_is_rejected_before_anything_is_written()
    {
        using var db = ResultsDb.Open(DbPath);
        long id = db.BeginRun(Spec(), Context);
        Assert.Throws<ArgumentOutOfRangeException>(() => db.FinishRun(id, Outcome(top1: 75.0), Predictions(0, 3, 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => db.FinishRun(id, Outcome() with { TrainSeconds = double.NaN }, Predictions(0, 3, 3)));
        Assert.Equal(RunStatus.Running, db.TryGetRun(id)?.Status);
    }

    // ---- concurrency and crashes ---------------------------------------------------------------------------------

    [Fact]
    public void Two_writers_on_one_file_lose_nothing()
    {
        const int runsPerWriter = 50, examples = 40, classes = 10;
        using (var db = ResultsDb.Open(DbPath)) { }   // create the schema first, as the CLI would

        void Writer(int writer)
        {
            using var db = ResultsDb.Open(DbPath);
            for (int i = 0; i < runsPerWriter; i++)
            {
                int run = writer * 1000 + i;
                long id = db.BeginRun(Spec(run, dataset: $"writer{writer}"), Context);
                db.TryGetFinished(Spec(run).Key);   // interleave reads as a sweep does
                db.FinishRun(id, Outcome(i / 100.0), Predictions(run, examples, classes));
            }
        }
        var failures = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = new[] { 1, 2 }.Select(w => new Thread(() =>
        {
            try { Writer(w); }
            catch (Exception e) { failures.Add(e); }   // an exception escaping a thread would kill the test host
        })).ToList();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Empty(failures);

        using var check = ResultsDb.Open(DbPath);
        var runs = check.Runs(new RunFilter(Status: RunStatus.Finished));
        Assert.Equal(2 * runsPerWriter, runs.Count);
        foreach (int writer in new[] { 1, 2 })
            for (int i = 0; i < runsPerWriter; i++)
            {
                int run = writer * 1000 + i;
                var record = check.TryGetFinished(Spec(run, dataset: $"writer{writer}").Key);
                Assert.NotNull(record);
                Assert.Equal(i / 100.0, record.Top1);
                AssertSamePredictions(Predictions(run, examples, classes), check.Predictions(record.Id));
            }
        Assert.Equal("ok", check.CheckIntegrity());
    }

    [Fact]
    public void One_instance_can_be_shared_by_threads()
    {
        using var db = ResultsDb.Open(DbPath);
        Parallel.For(0, 40, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            long id = db.BeginRun(Spec(i), Context);
            db.FinishRun(id, Outcome(), Predictions(i, 5, 3));
        });
        Assert.Equal(40, db.Runs(new RunFilter(Status: RunStatus.Finished)).Count);
        Assert.Equal(200L, RawScalar(DbPath, "SELECT count(*) FROM predictions"));
    }

    [Fact]
    public void A_killed_writer_process_leaves_only_complete_runs()
    {
        using (ResultsDb.Open(DbPath)) { }
        using var child = ResultsWriterChild.Start(DbPath);
        var stderr = child.StandardError.ReadToEndAsync();
        int finished = 0;
        var deadline = Stopwatch.StartNew();
        try
        {
            // Kill right after a BeginRun once a few runs are complete: the child is then inside FinishRun's transaction.
            while (deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                var read = child.StandardOutput.ReadLineAsync();
                if (!read.Wait(TimeSpan.FromSeconds(30) - deadline.Elapsed)) break;
                string? line = read.Result;
                if (line is null) Assert.Fail($"the writer process ended early: {stderr.Result}");
                if (line.StartsWith("finished ")) finished++;
                if (finished >= 3 && line.StartsWith("begun ")) break;
            }
        }
        finally
        {
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        Assert.True(finished >= 3, $"the writer finished only {finished} runs in 30 s");

        using var db = ResultsDb.Open(DbPath);
        Assert.Equal("ok", db.CheckIntegrity());
        var runs = db.Runs(new RunFilter(Dataset: "killed"));
        var complete = runs.Where(r => r.Status == RunStatus.Finished).ToList();
        Assert.True(complete.Count >= finished, $"{finished} runs reported finished, {complete.Count} stored");
        foreach (var run in complete)
        {
            var stored = db.Predictions(run.Id);
            Assert.Equal(ResultsWriterChild.Examples, stored.Count);
            int number = int.Parse(System.Text.Json.JsonDocument.Parse(run.Spec.HyperJson).RootElement.GetProperty("run").GetRawText());
            var expected = Predictions(number, ResultsWriterChild.Examples, ResultsWriterChild.Classes);
            AssertSamePredictions(expected.Take(3).Concat(expected.TakeLast(3)).ToList(), stored.Take(3).Concat(stored.TakeLast(3)).ToList());
        }
        foreach (var run in runs.Where(r => r.Status != RunStatus.Finished))
        {
            Assert.Equal(RunStatus.Running, run.Status);
            Assert.Empty(db.Predictions(run.Id));
            long retry = db.BeginRun(run.Spec, Context);   // resuming replaces the orphan
            db.FinishRun(retry, Outcome(), Predictions(0, 3, 3));
            Assert.Equal(retry, db.TryGetFinished(run.Key)?.Id);
        }
        Assert.All(db.Runs(new RunFilter(Dataset: "killed")), r => Assert.Equal(RunStatus.Finished, r.Status));
    }

    // ---- bad files -----------------------------------------------------------------------------------------------

    [Fact]
    public void A_file_that_is_not_a_database_is_a_user_error()
    {
        File.WriteAllText(DbPath, "this is a CSV file, not SQLite\nlr,wd\n0.001,0.0001\n" + new string('x', 4096));
        var e = Assert.Throws<PeftSharpException>(() => ResultsDb.Open(DbPath));
        Assert.StartsWith(DbPath + ": not a SQLite database", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void A_newer_schema_is_a_user_error()
    {
        ResultsDb.Open(DbPath).Dispose();
        using (var raw = Raw(DbPath))
        using (var command = raw.CreateCommand())
        {
            command.CommandText = $"PRAGMA user_version = {ResultsDb.SchemaVersion + 1}";
            command.ExecuteNonQuery();
        }
        var e = Assert.Throws<PeftSharpException>(() => ResultsDb.Open(DbPath));
        Assert.StartsWith(DbPath + ":", e.Message);
        Assert.Contains($"schema version {ResultsDb.SchemaVersion + 1} is newer", e.Message);
    }

    [Fact]
    public void Another_programs_sqlite_database_is_a_user_error()
    {
        using (var raw = Raw(DbPath))
        using (var command = raw.CreateCommand())
        {
            command.CommandText = "CREATE TABLE people (name TEXT)";
            command.ExecuteNonQuery();
        }
        var e = Assert.Throws<PeftSharpException>(() => ResultsDb.Open(DbPath));
        Assert.Contains("another program", e.Message);
        Assert.Equal("delete", RawScalar(DbPath, "PRAGMA journal_mode"));   // and we did not touch it
    }

    [Fact]
    public void A_folder_is_a_user_error()
    {
        var e = Assert.Throws<PeftSharpException>(() => ResultsDb.Open(dir));
        Assert.Contains("is a folder", e.Message);
    }

    [Fact]
    public void An_empty_file_becomes_a_results_database()
    {
        File.WriteAllBytes(DbPath, Array.Empty<byte>());
        using var db = ResultsDb.Open(DbPath);
        Assert.Empty(db.Runs());
    }

    // ---- queries -------------------------------------------------------------------------------------------------

    long Finished(ResultsDb db, RunSpec spec, double top1)
    {
        long id = db.BeginRun(spec, Context);
        db.FinishRun(id, Outcome(top1), Predictions(0, 2, 2));
        return id;
    }

    [Fact]
    public void Runs_filters_by_dataset_method_stage_status_and_sweep()
    {
        using var db = ResultsDb.Open(DbPath);
        long a = Finished(db, Spec(1, "dtd", "lora", "s1"), 0.5);
        long b = Finished(db, Spec(2, "dtd", "bitfit", "s1"), 0.5);
        long c = Finished(db, Spec(3, "cifar100", "lora", "s2"), 0.5);
        long d = Finished(db, Spec(4, "dtd", "lora", "s1") with { Stage = RunStage.Final, TrainSplit = "train800val200", EvalSplit = "test" }, 0.5);
        long e = db.BeginRun(Spec(5, "dtd", "lora", "s1"), Context);

        IEnumerable<long> Ids(RunFilter f) => db.Runs(f).Select(r => r.Id);
        Assert.Equal(new[] { a, b, c, d, e }, Ids(RunFilter.All));
        Assert.Equal(new[] { a, b, d, e }, Ids(new RunFilter(Dataset: "dtd")));
        Assert.Equal(new[] { a, c, d, e }, Ids(new RunFilter(Method: "lora")));
        Assert.Equal(new[] { d }, Ids(new RunFilter(Stage: RunStage.Final)));
        Assert.Equal(new[] { e }, Ids(new RunFilter(Status: RunStatus.Running)));
        Assert.Equal(new[] { c }, Ids(new RunFilter(SweepId: "s2")));
        Assert.Equal(new[] { a, e }, Ids(new RunFilter("dtd", "lora", RunStage.Search, SweepId: "s1")));
        Assert.Empty(Ids(new RunFilter(Dataset: "pets")));
    }

    [Fact]
    public void The_best_search_run_breaks_ties_by_lower_lr_then_lower_wd_then_hyper_json()
    {
        using var db = ResultsDb.Open(DbPath);
        RunSpec S(double lr, double wd, int rank) =>
            Spec() with { Lr = lr, WeightDecay = wd, HyperJson = $$"""{"rank": {{rank}}}""" };

        Finished(db, S(1e-2, 1e-4, 8), 0.8);
        long rank8 = Finished(db, S(1e-3, 1e-4, 8), 0.8);
        Finished(db, S(1e-3, 1e-3, 4), 0.8);
        long lowest = Finished(db, S(1e-3, 1e-4, 16), 0.8);   // {"rank":16} sorts before {"rank":8}
        Finished(db, S(1e-3, 1e-4, 2), 0.7);                  // lower accuracy never wins
        Finished(db, S(1e-4, 1e-4, 1) with { Stage = RunStage.Final }, 0.99);   // not a search run
        long failed = db.BeginRun(S(1e-5, 1e-5, 1), Context);  // not finished
        db.FailRun(failed, "x");

        Assert.Equal(lowest, db.BestSearchRun("dtd", "lora", "sweep-1")?.Id);
        Assert.NotEqual(rank8, lowest);
        Assert.Null(db.BestSearchRun("dtd", "lora", "other-sweep"));
        Assert.Null(db.BestSearchRun("dtd", "lora", null));

        long better = Finished(db, S(1e-2, 1e-3, 1), 0.81);
        Assert.Equal(better, db.BestSearchRun("dtd", "lora", "sweep-1")?.Id);
    }

    [Fact]
    public void Best_search_runs_are_per_dataset_method_and_sweep()
    {
        using var db = ResultsDb.Open(DbPath);
        long dtdLora = Finished(db, Spec(1, "dtd", "lora", "s1"), 0.6);
        Finished(db, Spec(2, "dtd", "lora", "s1"), 0.5);
        long dtdBitfit = Finished(db, Spec(3, "dtd", "bitfit", "s1"), 0.4);
        long petsLora = Finished(db, Spec(4, "pets", "lora", "s1"), 0.3);
        long otherSweep = Finished(db, Spec(5, "dtd", "lora", "s2"), 0.2);
        long noSweep = Finished(db, Spec(6, "dtd", "lora", null), 0.1);

        var best = db.BestSearchRuns();
        Assert.Equal(new[] { dtdBitfit, noSweep, dtdLora, otherSweep, petsLora }, best.Select(r => r.Id));
        Assert.Equal(new[] { dtdLora, dtdBitfit, petsLora }, db.BestSearchRuns(new RunFilter(SweepId: "s1")).Select(r => r.Id).Order());
        Assert.Equal(noSweep, db.BestSearchRun("dtd", "lora", null)?.Id);
        Assert.Equal(otherSweep, db.BestSearchRun("dtd", "lora", "s2")?.Id);
    }
}
