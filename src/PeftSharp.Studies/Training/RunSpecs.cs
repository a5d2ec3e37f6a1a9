using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Interop;
using PeftSharp.Results;
using PeftSharp.Tuners;

namespace PeftSharp.Training;

/// <summary>
/// The one place a request becomes a run's identity (<see cref="RunSpec"/>): the method's resolved hyperparameters
/// (so a changed default is a new run), the training settings with the data's fingerprint, the backbone's identity.
/// Every builder of runs (train, tune and sweeps, the studies, eval) comes through here.
/// </summary>
public static class RunSpecs
{
    /// <summary>A run that trains <paramref name="method"/> under <paramref name="train"/> (its lr, weight decay, seed,
    /// epochs and batch size are the run's) on <paramref name="trainSplit"/> and scores it on <paramref name="evalSplit"/>.</summary>
    /// <param name="data">The images' identity (<see cref="DataIdentity"/>, or a study's own fingerprint).</param>
    public static RunSpec Trained(RunStage stage, string dataset, string trainSplit, string evalSplit, string method,
                                  IReadOnlyDictionary<string, string> settings, TrainOptions train, JsonNode? data, string modelJson,
                                  string checkpoint, string? sweepId = null, string family = RunSpec.Classification) =>
        Of(stage, family, dataset, trainSplit, evalSplit, method, settings, train.Lr, train.WeightDecay, train.Seed, train.Epochs,
           train.BatchSize, TrainingJson(train, data), modelJson, checkpoint, sweepId);

    /// <summary>A run of any trainer: <paramref name="trainingJson"/> is that trainer's settings (CLIP's, for instance).</summary>
    /// <param name="settings">The method's settings, resolved to its full hyperparameters; null when nothing trains (zero-shot).</param>
    public static RunSpec Of(RunStage stage, string family, string dataset, string trainSplit, string evalSplit, string method,
                             IReadOnlyDictionary<string, string>? settings, double lr, double weightDecay, int seed, int epochs, int batchSize,
                             string trainingJson, string modelJson, string checkpoint, string? sweepId = null) => new()
    {
        Stage = stage, Family = family, Dataset = dataset, TrainSplit = trainSplit, EvalSplit = evalSplit, Method = method,
        HyperJson = settings == null ? "{}" : TunerRegistry.ResolveHypers(method, settings).ToJsonString(),
        Lr = lr, WeightDecay = weightDecay, Seed = seed, Epochs = epochs, BatchSize = batchSize,
        TrainingJson = trainingJson, ModelJson = modelJson, Checkpoint = checkpoint, SweepId = sweepId,
    };

    /// <summary>An evaluation that trained nothing (train split "none"): <paramref name="evaluation"/> says what makes
    /// two evaluations the same (the adapter's content, merging, preprocessing, precision, the images).</summary>
    public static RunSpec Evaluation(string dataset, string evalSplit, string method, int batchSize, string modelJson, string checkpoint,
                                     JsonObject evaluation) => new()
    {
        Stage = RunStage.Single, Dataset = dataset, TrainSplit = "none", EvalSplit = evalSplit, Method = method,
        Lr = 0, WeightDecay = 0, Seed = 0, Epochs = 0, BatchSize = batchSize, ModelJson = modelJson, Checkpoint = checkpoint,
        TrainingJson = new JsonObject(evaluation.Select(kv => KeyValuePair.Create(kv.Key, kv.Value?.DeepClone()))) { ["evaluation_only"] = true }.ToJsonString(),
    };

    /// <summary>The data of a run, for its identity: the fingerprints of its training and evaluation sets (paths,
    /// labels and sizes), so a run is never reused after the images changed.</summary>
    public static JsonObject DataIdentity(ImageDataset train, ImageDataset eval, string root) => new()
    {
        ["train"] = ImageTask.Fingerprint(train, root), ["eval"] = ImageTask.Fingerprint(eval, root),
    };

    /// <summary>The training settings that determine a run's result beyond lr, weight decay, seed, epochs and batch
    /// size (which the spec holds itself), and the data under "data" (null or empty: none, so identities keyed
    /// before data was recorded keep their keys).</summary>
    public static string TrainingJson(TrainOptions t, JsonNode? data = null)
    {
        var json = new JsonObject
        {
            ["warmup_epochs"] = t.WarmupEpochs, ["warmup_lr"] = t.WarmupLr, ["min_lr"] = t.MinLr,
            ["label_smoothing"] = t.LabelSmoothing, ["drop_path"] = t.DropPath, ["grad_clip"] = t.GradClip,
            ["normalization"] = t.Normalization, ["augment"] = t.Augment, ["cache_frozen_features"] = t.CacheFrozenFeatures,
            ["schedule"] = "cosine-per-epoch",
        };
        // Only a non-default precision enters the run key, so the float32 runs stored before it existed still match.
        if (t.Precision != Precision.Float32) json["precision"] = Autocast.Name(t.Precision);
        if (data is not null and not JsonObject { Count: 0 }) json["data"] = data.DeepClone();
        return json.ToJsonString();
    }
}
