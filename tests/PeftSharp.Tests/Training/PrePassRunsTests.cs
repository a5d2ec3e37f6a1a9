using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Results;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

/// <summary>A method's pre-pass as a run of its own: a grid over learning rates runs it once per training split and
/// reuses its selection, and a run that reuses it trains exactly as one that ran it.</summary>
public class PrePassRunsTests
{
    static readonly Lazy<string> Task = new(() => TinyVtab.Create());

    static TuneSpec Spec(params double[] lrs) => new()
    {
        TaskDirectory = Task.Value, Backbone = new BackboneSpec(null, null, TinyVtab.Backbone), Method = "spt-lora",
        Settings = new Dictionary<string, string> { ["budget"] = "6000", ["batches"] = "2" },
        Lrs = lrs, WeightDecays = new[] { 1e-4 },
        Train = new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 16, DropPath = 0.1 },
    };

    static JsonObject Metrics(RunRecord r) => JsonNode.Parse(r.Outcome!.MetricsJson)!.AsObject();

    static Dictionary<string, Tensor> Selection(IResultsStore db, RunRecord run)
    {
        string dir = TestFiles.TempDir();
        Assert.True(RunArtifacts.ExportAdapter(db, run.Id, dir));
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors"));
        return file.Tensors.Where(t => t.Name.EndsWith(".index") || t.Name.EndsWith(".spt_structured")).ToDictionary(t => t.Name, t => file.ReadTensor(t.Name));
    }

    [Fact]
    public void A_two_lr_tune_runs_the_pre_pass_once_per_split_and_both_runs_hold_the_same_selection()
    {
        using var db = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "results.db"));
        var result = new StudyProtocol(new RunExecutor(db, CPU)).Tune(Spec(1e-3, 1e-2));
        Assert.Equal(2, result.Search.Count);
        var passes = db.Runs().Where(r => r.Spec.EvalSplit == PrePassRuns.EvalSplit).ToList();
        // One pass for train800 (both search runs) and one for train800val200 (the final run).
        Assert.Equal(new[] { "train800", "train800val200" }, passes.Select(p => p.Spec.TrainSplit).Order());
        Assert.All(passes, p => Assert.Equal(RunStatus.Finished, p.Status));
        Assert.Equal(PrePassRuns.SpecOf(result.Search[0].Spec).Key, PrePassRuns.SpecOf(result.Search[1].Spec).Key);
        Assert.Equal(new[] { false, true }, result.Search.Select(r => Metrics(r)["prepass_reused"]!.GetValue<bool>()));
        var (first, second) = (Selection(db, result.Search[0]), Selection(db, result.Search[1]));
        Assert.NotEmpty(first);
        foreach (var (name, t) in first) TensorAssert.Identical(t, second[name], name);
        // The stored pass records its time and the count its selection trains.
        var search = passes.Single(p => p.Spec.TrainSplit == "train800");
        Assert.True(search.Outcome!.TrainSeconds > 0);
        Assert.Equal(result.Search[0].Outcome!.TrainableParams, search.Outcome.TrainableParams);
        Assert.Equal(search.Outcome.TrainSeconds, Metrics(result.Search[1])["prepass_seconds"]!.GetValue<double>());
    }

    [Fact]
    public void A_run_that_reuses_the_pass_trains_exactly_as_one_that_ran_it()
    {
        // lr 1e-2 second (reusing the pass of lr 1e-3's run) in one store, alone (running the pass) in another.
        using var shared = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "results.db"));
        var reused = new StudyProtocol(new RunExecutor(shared, CPU)).Tune(Spec(1e-3, 1e-2)).Search[1];
        using var alone = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "results.db"));
        var ran = new StudyProtocol(new RunExecutor(alone, CPU)).Tune(Spec(1e-2, 3e-2)).Search[0];
        Assert.True(Metrics(reused)["prepass_reused"]!.GetValue<bool>());
        Assert.False(Metrics(ran)["prepass_reused"]!.GetValue<bool>());
        Assert.Equal((reused.Spec with { SweepId = null }).Key, (ran.Spec with { SweepId = null }).Key);   // the same run but for its sweep
        Assert.Equal(ran.Top1, reused.Top1);
        var (a, b) = (alone.Predictions(ran.Id), shared.Predictions(reused.Id));
        Assert.Equal(a.Select(p => p.Logits), b.Select(p => p.Logits));
    }
}
