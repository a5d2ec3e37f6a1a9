using PeftSharp.Evaluation;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Results;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Training;

/// <summary>
/// A method's pre-pass (GPS, SCT, SPT, NOAH) as a small run of its own in the results store, so that the runs of a
/// search grid that would compute the same pass compute it once. A pass reads the training split, the backbone, the
/// method's hyperparameters and the seed, never the learning rate or the weight decay: its run key is the training
/// run's without those (and without the evaluation split and the epochs), its selection the run's artefact
/// <see cref="Artifact"/>. The record is a single-stage run with evaluation split <see cref="EvalSplit"/> and sweep
/// <see cref="Sweep"/>; its train seconds are the pass's, its trainable parameters those the selection gives.
/// <para>The pass is stored once it has run: an interrupted pass is run again (it leaves no partial record).</para>
/// </summary>
public sealed class PrePassRuns : IPrePassStore
{
    public const string Artifact = "selection";
    public const string EvalSplit = "prepass";
    public const string Sweep = "prepass";

    readonly IResultsStore db;
    readonly RunSpec run;
    readonly string datasetPath;

    /// <param name="run">The training run whose pre-pass this is.</param>
    public PrePassRuns(IResultsStore db, RunSpec run, string datasetPath)
    {
        this.db = db;
        this.run = run;
        this.datasetPath = datasetPath;
    }

    /// <summary>The identity of the run's pre-pass.</summary>
    public RunSpec Spec => SpecOf(run);

    public static RunSpec SpecOf(RunSpec run) => new()
    {
        Stage = RunStage.Single, Dataset = run.Dataset, TrainSplit = run.TrainSplit, EvalSplit = EvalSplit, Method = run.Method,
        HyperJson = run.HyperJson, Lr = 0, WeightDecay = 0, Seed = run.Seed, Epochs = 0, BatchSize = run.BatchSize,
        TrainingJson = PassSettings(run.TrainingJson), ModelJson = run.ModelJson, Checkpoint = run.Checkpoint, Family = run.Family, SweepId = Sweep,
    };

    /// <summary>The training settings a pass can depend on: the stochastic depth and precision of the model it runs,
    /// the normalisation of its images and the training images themselves (not the evaluation split's).</summary>
    static string PassSettings(string trainingJson)
    {
        var run = JsonNode.Parse(trainingJson)!.AsObject();
        var pass = new JsonObject();
        foreach (var key in new[] { "drop_path", "normalization", "precision" })
            if (run[key] is { } value) pass[key] = value.DeepClone();
        if (run["data"]?["train"] is { } train) pass["data"] = new JsonObject { ["train"] = train.DeepClone() };
        return pass.ToJsonString();
    }

    public double? TryLoad(PeftModel peft)
    {
        if (db.TryGetFinished(Spec.Key) is not { Outcome: { } outcome } run || db.GetArtifact(run.Id, Artifact) is not { } bytes) return null;
        string file = TempFile();
        try
        {
            File.WriteAllBytes(file, bytes);
            using var saved = SafeTensorsFile.Open(file);
            string where = $"{db.Location}: pre-pass run {run.Id}";
            return peft.RestoreSelection(name => saved.Contains(name) ? saved.ReadTensor(name) : null, where) ? outcome.TrainSeconds : null;
        }
        finally
        {
            File.Delete(file);
        }
    }

    public void Save(PeftModel peft, double seconds)
    {
        var context = new RunContext { DatasetPath = datasetPath, CodeVersion = RunExecutor.CodeVersion };
        string owner = $"{Environment.MachineName}:{Environment.ProcessId}:prepass";
        var start = db.TryBeginRun(Spec, context, owner, TimeSpan.FromMinutes(1));
        if (!start.Begun) return;   // stored meanwhile by another process that ran the same pass (or storing it now)
        string file = TempFile();
        try
        {
            SafeTensors.Save(file, peft.SelectionState().Select(s => KeyValuePair.Create(s.Name, s.Tensor.detach().cpu())),
                             new Dictionary<string, string> { ["format"] = "pt", ["method"] = peft.MethodSpec });
            db.PutArtifact(start.Id, Artifact, File.ReadAllBytes(file));
            var metrics = new JsonObject
            {
                ["metric"] = "none", ["prepass_seconds"] = seconds,
                ["passes"] = new JsonArray(peft.PrePasses.Select(p => (JsonNode)p.PrePassName).ToArray()),
            };
            foreach (var (name, value) in peft.PrePasses.SelectMany(p => p.PrePassMetrics)) metrics[name] = value;
            db.FinishRun(start.Id, new RunOutcome { Top1 = 0, MetricsJson = metrics.ToJsonString(), TrainableParams = peft.CountTrainable(), TrainSeconds = seconds },
                         Array.Empty<Prediction>());
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            db.FailRun(start.Id, $"{e.GetType().Name}: {e.Message}");
            throw;
        }
        finally
        {
            File.Delete(file);
        }
    }

    static string TempFile() => Path.Combine(Path.GetTempPath(), $"peftsharp-prepass-{Environment.ProcessId}-{Guid.NewGuid():N}.safetensors");
}
