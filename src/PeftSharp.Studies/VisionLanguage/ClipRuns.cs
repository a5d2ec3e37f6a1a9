using PeftSharp.Evaluation;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.VisionLanguage;

/// <summary>One CLIP fine-tuning run: a method (or "zero-shot": no training) with fixed settings on chosen towers,
/// trained on a fraction of a task's pairs and scored on its test pairs.</summary>
public sealed record ClipRunRequest(VlTask Task, double DataFraction, string Method, IReadOnlyDictionary<string, string> Settings,
                                    IReadOnlyList<string> Towers, ClipTrainOptions Train)
{
    public const string ZeroShot = "zero-shot";
}

/// <summary>A finished CLIP run's result: the score in %, the trainable parameters, every metric.</summary>
public sealed record ClipRunResult(ClipRunRequest Request, RunRecord Record)
{
    public double Score => Record.Outcome!.Top1 * 100;
    public long TrainableParams => Record.Outcome!.TrainableParams;
    public int TrainPairs { get; init; }
}

/// <summary>A CLIP model's score on a task's test pairs: the mean recall for retrieval (every recall in the metrics),
/// top-1 for classification (with every test example's class logits).</summary>
public sealed record ClipScore(double Score, IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<Prediction> Predictions)
{
    public static ClipScore Of(ClipModel model, VlTask task, Normalization normalization, Precision precision = Precision.Float32)
    {
        if (task.Objective == ClipObjective.Contrastive)
        {
            var recall = ClipEvaluation.Retrieval(model, task.Test, normalization, precision);
            return new ClipScore(recall.Mean, recall.ToDictionary(), []);
        }
        var classified = ClipEvaluation.Classify(model, task.Test, normalization, precision: precision);
        var predictions = classified.Logits.Select((row, i) => new Prediction(i, task.Test.Labels![i], classified.Predicted[i], row)).ToList();
        return new ClipScore(classified.Top1, new Dictionary<string, double> { ["top1"] = classified.Top1 }, predictions);
    }
}

/// <summary>
/// One CLIP run as the results-store executor runs it (<see cref="RunExecutor"/>: a finished run is read back, never
/// retrained; leases, failures and adapter artefacts as for every family). Keyed on the method's resolved
/// hyperparameters, so a changed default is a new run.
/// </summary>
public sealed class ClipJob : IRunJob
{
    public const string Family = "vision-language";

    public ClipJob(ClipRunRequest request, string checkpoint, string? checkpointIdentity = null)
    {
        Request = request;
        Checkpoint = checkpoint;
        TrainSet = request.Method == ClipRunRequest.ZeroShot ? null : request.Task.TrainFraction(request.DataFraction);
        Options = request.Train with { Objective = request.Task.Objective };
        bool trains = TrainSet != null;
        Spec = RunSpecs.Of(RunStage.Single, Family, "vl/" + request.Task.Name, trains ? $"train[:{TrainSet!.Count}]" : "none", "test",
            request.Method, trains ? request.Settings : null, trains ? Options.Lr : 0, trains ? Options.WeightDecay : 0, Options.Seed, 0,
            Options.BatchSize, trains ? Options.ToJson().ToJsonString() : ZeroShotJson(Options.Precision),
            new JsonObject { ["model"] = "clip", ["towers"] = string.Join("+", request.Towers), ["objective"] = request.Task.Objective.ToString().ToLowerInvariant() }.ToJsonString(),
            checkpointIdentity ?? PeftSharp.Checkpoints.CheckpointIdentity.Of(checkpoint));
    }

    /// <summary>A zero-shot run trains nothing; only an evaluation in bf16 makes it another run.</summary>
    static string ZeroShotJson(Precision precision) =>
        precision == Precision.Float32 ? "{}" : new JsonObject { ["precision"] = Interop.Autocast.Name(precision) }.ToJsonString();

    public ClipRunRequest Request { get; }
    public string Checkpoint { get; }
    /// <summary>The pairs it trains on (null: zero-shot).</summary>
    public CaptionSet? TrainSet { get; }
    public ClipTrainOptions Options { get; }
    public RunSpec Spec { get; }
    public string DatasetPath => Request.Task.Name;

    public string Label => $"{Request.Task.Name} {Request.Method} {Describe(Request.Settings)} on {TrainSet?.Count ?? 0} pairs";

    static string Describe(IReadOnlyDictionary<string, string> settings) =>
        settings.Count == 0 ? "" : "(" + string.Join(", ", settings.Select(s => $"{s.Key}={s.Value}")) + ")";

    public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint)
    {
        manual_seed(Options.Seed);
        var clip = ModelCheckpoints.LoadClip(Checkpoint).Model;
        try
        {
            clip.to(device);
            var peft = TrainSet == null ? null : ClipRuns.Apply(clip, Request.Method, Request.Settings, Request.Towers);
            double trainSeconds = 0, pairsPerSecond = 0;
            long trainable = 0;
            var metrics = new JsonObject();
            if (peft != null)
            {
                trainable = peft.CountTrainable(includeHead: true);
                var trained = new ClipTrainer(peft, Options).Fit(TrainSet!);
                (trainSeconds, pairsPerSecond) = (trained.Seconds, trained.PairsPerSecond);
                metrics["final_loss"] = Math.Round(trained.FinalLoss, 5);
                metrics["first_loss"] = Math.Round(trained.Losses[0], 5);
            }
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var score = ClipScore.Of(clip, Request.Task, Options.Normalization, Options.Precision);
            // Classification's top-1 is the outcome's; the recalls of retrieval go in the metrics.
            if (Request.Task.Objective == ClipObjective.Contrastive)
                foreach (var (k, v) in score.Metrics) metrics[k] = Math.Round(v, 3);
            var outcome = new RunOutcome
            {
                Top1 = score.Score / 100, MetricsJson = metrics.ToJsonString(), TrainableParams = trainable, TrainSeconds = trainSeconds,
                EvalSeconds = watch.Elapsed.TotalSeconds, ImagesPerSecond = pairsPerSecond,
            };
            return new RunProduct(outcome, score.Predictions, peft, peft == null ? null : dir => AdapterFiles.Save(peft, dir, Checkpoint), clip);
        }
        catch
        {
            clip.Dispose();
            throw;
        }
    }
}

/// <summary>CLIP runs of a study against the results database, through the one executor.</summary>
public sealed class ClipRuns(IResultsStore db, string checkpoint, Device device)
{
    readonly string checkpointIdentity = PeftSharp.Checkpoints.CheckpointIdentity.Of(checkpoint);

    /// <summary>False: a run missing from the database is an error naming it, not trained.</summary>
    public bool TrainMissing { get; init; } = true;

    public ClipRunResult Execute(ClipRunRequest request, Action<string>? log = null)
    {
        var job = new ClipJob(request, checkpoint, checkpointIdentity);
        bool trained = false;
        var record = new RunExecutor(db, device) { TrainMissing = TrainMissing, KeepWeights = KeepWeights.None }
            .Execute(job, job.Label, (_, r) => { trained = true; return r; });
        if (record.Status != RunStatus.Finished) throw new PeftSharpException($"{job.Label}: {record.Error}");
        if (trained) log?.Invoke($"{job.Label}: {record.Outcome!.Top1 * 100:F2} ({record.Outcome.TrainableParams:N0} trainable, {record.Outcome.TrainSeconds:F0} s)");
        return new ClipRunResult(request, record) { TrainPairs = job.TrainSet?.Count ?? 0 };
    }

    /// <summary>The method on the towers. Full fine-tuning trains every parameter of the model, projections and
    /// temperature included; the PEFT methods train only their own parameters (projections frozen, as in the
    /// study).</summary>
    public static PeftModel Apply(ClipModel clip, string method, IReadOnlyDictionary<string, string> settings, IReadOnlyList<string> towers)
    {
        var peft = PeftModel.Create(clip, method, settings, new PeftOptions { TrainHead = false, Towers = towers.Select(TowerName).ToArray() });
        if (method == "full")
            foreach (var p in clip.parameters()) p.requires_grad = true;
        return peft;
    }

    /// <summary>"image" | "text" (the CLI's words) or "visual" | "text" (the state-dict prefixes).</summary>
    public static string TowerName(string tower) => tower switch
    {
        "image" or "visual" => "visual",
        "text" => "text",
        _ => throw new PeftSharpException($"unknown CLIP tower '{tower}'; expected image, text or both"),
    };

    /// <summary>--towers image|text|both as the tower list.</summary>
    public static IReadOnlyList<string> ParseTowers(string text) => text switch
    {
        "both" => ["visual", "text"],
        _ => [TowerName(text)],
    };
}
