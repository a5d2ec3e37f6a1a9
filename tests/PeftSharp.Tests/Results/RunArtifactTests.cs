using PeftSharp.Results;
using PeftSharp.Tests.Results.Postgres;
using PeftSharp.Tests.Sweeps;
using PeftSharp.Tests.Tuners;
using PeftSharp.Training;
using PeftSharp.Tuners;
using static PeftSharp.Tests.Results.ResultsTestData;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Results;

/// <summary>Runs keep their trained adapter in the results store, content-addressed, and export it again.</summary>
public sealed class RunArtifactTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-artifacts");
    readonly Lazy<TestPostgres> server = new(() => new TestPostgres());
    string DbPath => Path.Combine(dir, "results.db");

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    static RunRequest Request(string method)
    {
        var plan = TunePlan.Create(SweepTestKit.Spec(method, [1e-2]));
        var (train, eval) = plan.Loaders(RunStage.Final);
        return plan.Request(RunStage.Final, 0, 42, train, eval);
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("vpt-deep")]
    public void A_finished_run_stores_its_adapter_which_reloads_to_the_trained_models_logits(string method)
    {
        using var db = ResultsDb.Open(DbPath);
        var request = Request(method);
        var (x, _) = TunerTestKit.Batch();
        Tensor? expected = null;
        var record = new RunExecutor(db, CPU).Execute(request, method, (product, r) =>
        {
            expected = TunerTestKit.EvalLogits(product.Peft.Vit, x);
            return r;
        });
        Assert.Equal(RunStatus.Finished, record.Status);
        var info = db.FindArtifact(record.Id, RunArtifacts.Adapter)!;
        Assert.True(info.Bytes > 0);
        Assert.True(File.Exists(Path.Combine(DbPath + ".artifacts", info.Sha256)));

        string exported = Path.Combine(dir, "exported");
        Assert.True(RunArtifacts.ExportAdapter(db, record.Id, exported));
        using var fresh = request.Backbone.Load(request.NumClasses, 0, out _);
        var loaded = AdapterFiles.Load(fresh, exported);
        Assert.Equal(method, loaded.MethodSpec);
        TensorAssert.Identical(expected!, TunerTestKit.EvalLogits(fresh, x), $"{method} exported from run {record.Id}");
    }

    [Theory]
    [InlineData(KeepWeights.None, "lora", false)]
    [InlineData(KeepWeights.Adapters, "lora", true)]
    [InlineData(KeepWeights.Adapters, "ssf+lora", true)]
    [InlineData(KeepWeights.Adapters, "full", false)]
    [InlineData(KeepWeights.All, "full", true)]
    public void Keep_weights_decides_which_methods_keep_them(KeepWeights keep, string method, bool kept) =>
        Assert.Equal(kept, keep.Keeps(method));

    [Fact]
    public void Keep_weights_none_stores_nothing_and_export_says_so()
    {
        using var db = ResultsDb.Open(DbPath);
        var record = new RunExecutor(db, CPU) { KeepWeights = KeepWeights.None }.Execute(Request("bitfit"), "bitfit");
        Assert.Equal(RunStatus.Finished, record.Status);
        Assert.Null(db.FindArtifact(record.Id, RunArtifacts.Adapter));
        Assert.False(RunArtifacts.ExportAdapter(db, record.Id, Path.Combine(dir, "none")));
        Assert.False(Directory.Exists(DbPath + ".artifacts"));
    }

    [Fact]
    public void Equal_content_is_stored_once_and_each_run_gets_its_own()
    {
        using var db = ResultsDb.Open(DbPath);
        long a = Finished(db, 1), b = Finished(db, 2), c = Finished(db, 3);
        byte[] same = Enumerable.Range(0, 5000).Select(i => (byte)(i * 7)).ToArray(), other = [1, 2, 3];
        db.PutArtifact(a, "adapter", same);
        db.PutArtifact(b, "adapter", (byte[])same.Clone());
        db.PutArtifact(c, "adapter", other);
        Assert.Equal(2, Directory.GetFiles(db.ArtifactFolder).Length);
        Assert.Equal(db.FindArtifact(a, "adapter")!.Sha256, db.FindArtifact(b, "adapter")!.Sha256);
        Assert.Equal(same, db.GetArtifact(b, "adapter"));
        Assert.Equal(other, db.GetArtifact(c, "adapter"));
        Assert.Null(db.GetArtifact(a, "weights"));
        db.PutArtifact(a, "adapter", other);   // replaced, not added
        Assert.Equal(other, db.GetArtifact(a, "adapter"));
    }

    [Fact]
    public void A_damaged_artifact_file_is_an_error_naming_it_not_a_wrong_model()
    {
        using var db = ResultsDb.Open(DbPath);
        long id = Finished(db, 1);
        db.PutArtifact(id, "adapter", [1, 2, 3, 4]);
        string file = Directory.GetFiles(db.ArtifactFolder).Single();
        File.WriteAllBytes(file, [1, 2, 3, 5]);
        var e = Assert.Throws<PeftSharpException>(() => db.GetArtifact(id, "adapter"));
        Assert.Contains(file, e.Message);
        Assert.Contains("damaged", e.Message);
        File.Delete(file);
        Assert.Contains("artefact file missing", Assert.Throws<PeftSharpException>(() => db.GetArtifact(id, "adapter")).Message);
    }

    [Fact]
    public void A_packed_folder_is_the_same_bytes_whenever_it_is_packed_and_unpacks_to_the_same_files()
    {
        string folder = Path.Combine(dir, "adapter");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "b.json"), "{\"x\": 1}");
        File.WriteAllBytes(Path.Combine(folder, "a.bin"), Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray());
        byte[] first = RunArtifacts.PackFolder(folder);
        File.SetLastWriteTimeUtc(Path.Combine(folder, "a.bin"), DateTime.UtcNow.AddDays(-3));
        Assert.Equal(first, RunArtifacts.PackFolder(folder));
        File.WriteAllText(Path.Combine(folder, "b.json"), "{\"x\": 2}");
        Assert.NotEqual(first, RunArtifacts.PackFolder(folder));

        string unpacked = Path.Combine(dir, "unpacked");
        RunArtifacts.UnpackFolder(first, unpacked);
        Assert.Equal(new[] { "a.bin", "b.json" }, Directory.GetFiles(unpacked).Select(Path.GetFileName).Order());
        Assert.Equal("{\"x\": 1}", File.ReadAllText(Path.Combine(unpacked, "b.json")));
    }

    [PostgresFact]
    public void Postgres_stores_an_artifact_once_per_hash_and_returns_it()
    {
        using var db = ResultsStores.Open(server.Value.Url);
        long a = Finished(db, 1), b = Finished(db, 2);
        byte[] content = Enumerable.Range(0, 70_000).Select(i => (byte)(i % 251)).ToArray();
        db.PutArtifact(a, "adapter", content);
        db.PutArtifact(b, "adapter", content);
        Assert.Equal(content, db.GetArtifact(a, "adapter"));
        Assert.Equal(content.Length, db.FindArtifact(b, "adapter")!.Bytes);
        Assert.Equal(1L, Convert.ToInt64(server.Value.Sql("SELECT count(*) FROM artifact_content")));
        Assert.Equal(2L, Convert.ToInt64(server.Value.Sql("SELECT count(*) FROM run_artifacts")));
        Assert.Null(db.GetArtifact(a, "weights"));
    }

    static long Finished(SqlResultsStore db, int i)
    {
        long id = db.BeginRun(Spec(i), Context);
        db.FinishRun(id, Outcome(), Predictions(i, 4, 2));
        return id;
    }
}
