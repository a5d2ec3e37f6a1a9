using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
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

/// <summary>
/// Executes CLIP runs against the results database, as <see cref="RunExecutor"/> does for image classifiers: a
/// finished run with the same key is read back, never retrained, and a run's outcome lands in one transaction, so
/// an interrupted study loses at most the run in flight. Classification runs store every test example's class
/// logits; retrieval runs store their recalls in the metrics.
/// </summary>
public sealed class ClipRuns(IResultsStore db, string checkpoint, Device device)
{
    readonly string checkpointIdentity = RunSpec.CheckpointIdentity(checkpoint);

    /// <summary>False: a run missing from the database is an error naming it, not trained.</summary>
    public bool TrainMissing { get; init; } = true;

    /// <summary>The run's identity; <paramref name="train"/> is the pairs it trains on (null for zero-shot) and
    /// <paramref name="options"/> its training, the objective being the task's.</summary>
    static RunSpec Spec(ClipRunRequest r, CaptionSet? train, ClipTrainOptions options, string checkpointIdentity) => new()
    {
        Stage = RunStage.Single, Dataset = "vl/" + r.Task.Name, TrainSplit = train == null ? "none" : $"train[:{train.Count}]", EvalSplit = "test",
        Method = r.Method, HyperJson = new JsonObject(r.Settings.OrderBy(s => s.Key).Select(s => KeyValuePair.Create(s.Key, (JsonNode?)s.Value))).ToJsonString(),
        Lr = train == null ? 0 : options.Lr, WeightDecay = train == null ? 0 : options.WeightDecay, Seed = options.Seed, Epochs = 0,
        BatchSize = options.BatchSize, TrainingJson = train == null ? "{}" : options.ToJson().ToJsonString(),
        ModelJson = new JsonObject { ["model"] = "clip", ["towers"] = string.Join("+", r.Towers), ["objective"] = r.Task.Objective.ToString().ToLowerInvariant() }.ToJsonString(),
        Checkpoint = checkpointIdentity,
    };

    public ClipRunResult Execute(ClipRunRequest request, Action<string>? log = null)
    {
        var train = request.Method == ClipRunRequest.ZeroShot ? null : request.Task.TrainFraction(request.DataFraction);
        var options = request.Train with { Objective = request.Task.Objective };
        var spec = Spec(request, train, options, checkpointIdentity);
        int trainPairs = train?.Count ?? 0;
        string label = $"{request.Task.Name} {request.Method} {Describe(request.Settings)} on {trainPairs} pairs";
        if (db.TryGetFinished(spec.Key) is RunRecord done) return new ClipRunResult(request, done) { TrainPairs = trainPairs };
        if (!TrainMissing)
            throw new PeftSharpException($"{db.Location}: no finished run for {label}, and training missing runs is off");
        long id = db.BeginRun(spec, new RunContext { DatasetPath = request.Task.Name, CodeVersion = RunExecutor.CodeVersion });
        try
        {
            var (outcome, predictions) = Train(request, train, options);
            db.FinishRun(id, outcome, predictions);
            var record = db.TryGetRun(id)!;
            log?.Invoke($"{label}: {record.Outcome!.Top1 * 100:F2} ({record.Outcome.TrainableParams:N0} trainable, {record.Outcome.TrainSeconds:F0} s)");
            return new ClipRunResult(request, record) { TrainPairs = trainPairs };
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            db.FailRun(id, e is PeftSharpException ? e.Message : $"{e.GetType().Name}: {e.Message}");
            throw;
        }
    }

    static string Describe(IReadOnlyDictionary<string, string> settings) =>
        settings.Count == 0 ? "" : "(" + string.Join(", ", settings.Select(s => $"{s.Key}={s.Value}")) + ")";

    (RunOutcome, IReadOnlyList<Prediction>) Train(ClipRunRequest r, CaptionSet? train, ClipTrainOptions options)
    {
        manual_seed(options.Seed);
        using var clip = ModelCheckpoints.LoadClip(checkpoint).Model;
        clip.to(device);
        double trainSeconds = 0, pairsPerSecond = 0;
        long trainable = 0;
        var metrics = new JsonObject();
        if (train != null)
        {
            var peft = Apply(clip, r.Method, r.Settings, r.Towers);
            trainable = peft.CountTrainable(includeHead: true);
            var trained = new ClipTrainer(peft, options).Fit(train);
            (trainSeconds, pairsPerSecond) = (trained.Seconds, trained.PairsPerSecond);
            metrics["final_loss"] = Math.Round(trained.FinalLoss, 5);
            metrics["first_loss"] = Math.Round(trained.Losses[0], 5);
        }
        var watch = System.Diagnostics.Stopwatch.StartNew();
        double score;
        IReadOnlyList<Prediction> predictions = [];
        if (r.Task.Objective == ClipObjective.Contrastive)
        {
            var recall = ClipEvaluation.Retrieval(clip, r.Task.Test, options.Normalization);
            foreach (var (k, v) in recall.ToDictionary()) metrics[k] = Math.Round(v, 3);
            score = recall.Mean;
        }
        else
        {
            var classified = ClipEvaluation.Classify(clip, r.Task.Test, options.Normalization);
            score = classified.Top1;
            predictions = classified.Logits.Select((row, i) => new Prediction(i, r.Task.Test.Labels![i], classified.Predicted[i], row)).ToList();
        }
        var outcome = new RunOutcome
        {
            Top1 = score / 100, MetricsJson = metrics.ToJsonString(), TrainableParams = trainable, TrainSeconds = trainSeconds,
            EvalSeconds = watch.Elapsed.TotalSeconds, ImagesPerSecond = pairsPerSecond,
        };
        return (outcome, predictions);
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
