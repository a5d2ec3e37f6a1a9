using PeftSharp.Evaluation;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Dense;

/// <summary>Everything one dense run needs: its identity, the backbone, the method, the task and its two splits.
/// The training split may be several joined by '+' ("train+val").</summary>
public sealed record DenseRunRequest(RunSpec Spec, BackboneSpec Backbone, IReadOnlyDictionary<string, string> Settings, TrainOptions Train,
                                     DenseTask Task, int ImageSize, string SegHead = "uper") : IRunJob
{
    public string DatasetPath => Task.Directory;

    /// <summary>The head's name: the segmentation head's, or FCOS for detection.</summary>
    public string Head => Task.Kind == DenseKind.Segmentation ? SegHead : "fcos";

    /// <summary>The executor's entry (<see cref="RunExecutor.Execute(IRunJob, string, Func{RunProduct, RunRecord, RunRecord}?)"/>):
    /// trains and scores, and returns the outcome with the family's primary metric (mIoU or box AP) in Top1, its name
    /// and every other figure in the metrics, the trainable parameters of the method, the head's, the peak training
    /// memory, and the first test images' predictions (the report draws them). After each epoch the method's tensors
    /// and the head are checkpointed, so an interrupted run resumes after its last finished epoch.</summary>
    public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint)
    {
        var product = DenseRuns.Train(this, device, progress, checkpoint);
        var metrics = product.Evaluation.Metrics;
        metrics["family"] = Task.Family;
        metrics["epoch_losses"] = new JsonArray(product.Training.EpochLosses.Select(l => (JsonNode)JsonValue.Create(l)!).ToArray());
        metrics["peak_training_bytes"] = product.Training.PeakTrainingBytes;
        metrics["head_params"] = product.Model.decode_head.parameters().Sum(p => p.numel());
        metrics["backbone_params"] = product.Peft.CountTotal();
        metrics["pictures"] = DenseRuns.Pictures(product.Evaluation);
        var outcome = new RunOutcome
        {
            Top1 = Math.Clamp(product.Evaluation.Primary, 0, 1), MetricsJson = metrics.ToJsonString(),
            TrainableParams = product.Peft.CountTrainable(), TrainSeconds = product.Training.Seconds,
            EvalSeconds = product.Evaluation.Seconds, ImagesPerSecond = product.Training.ImagesPerSecond,
        };
        return new RunProduct(outcome, Array.Empty<Prediction>(), product.Peft, dir => DenseRuns.SaveAdapter(product, this, dir), product);
    }

    /// <summary>Train on the first N images of each training split only (null: all).</summary>
    public int? TrainImages { get; init; }
    /// <summary>Score the first N images of the evaluation split only (null: all).</summary>
    public int? EvalImages { get; init; }
    /// <summary>In a joined training split, take the first N of its "val" part (null: as many as of the others).</summary>
    public int? ValImages { get; init; }
    /// <summary>The head's learning rate (null: the run's lr, as the method's tensors).</summary>
    public double? HeadLr { get; init; }

    /// <summary>The run's identity: the training settings, the task family, the head and the data's fingerprint are
    /// part of the key, so a dense run never shares a key with a classification run or with other images.</summary>
    public static DenseRunRequest Create(DenseTask task, string method, IReadOnlyDictionary<string, string>? settings, TrainOptions train,
                                         BackboneSpec backbone, string trainSplit, string evalSplit, int imageSize, string segHead = "uper", string? sweepId = null,
                                         int? trainImages = null, int? evalImages = null, int? valImages = null, double? headLr = null,
                                         RunStage stage = RunStage.Single)
    {
        settings ??= new Dictionary<string, string>();
        var data = new JsonObject { ["images"] = task.Fingerprint(trainSplit.Split('+').Append(evalSplit).Distinct().ToArray()) };
        var spec = RunSpecs.Trained(stage, task.Name, trainSplit, evalSplit, method, settings, train, data,
                                    backbone.ModelJson, backbone.CheckpointIdentity(), sweepId, family: task.Family);
        var training = JsonNode.Parse(spec.TrainingJson)!.AsObject();
        training["image_size"] = imageSize;
        training["head"] = task.Kind == DenseKind.Segmentation ? segHead : "fcos";
        if (trainImages is int n) training["train_images"] = n;
        if (evalImages is int m) training["eval_images"] = m;
        if (valImages is int v && trainSplit.Contains('+')) training["val_images"] = v;
        if (headLr is double h) training["head_lr"] = h;
        spec = spec with { TrainingJson = training.ToJsonString() };
        return new DenseRunRequest(spec, backbone, settings, train, task, imageSize, segHead) { TrainImages = trainImages, EvalImages = evalImages, ValImages = valImages, HeadLr = headLr };
    }

    /// <summary>The backbone at the task's input size (the position table resampled as timm does), without a
    /// classifier, with the run's stochastic depth.</summary>
    public VisionTransformer LoadBackbone() =>
        DenseAdapter.LoadBackbone(Backbone.Preset, Backbone.ConfigJson, Backbone.Checkpoint, ImageSize, Train.DropPath);
}

/// <summary>A trained dense run: the model, its method, the training record and the evaluation.</summary>
public sealed class DenseRunProduct(DenseModel model, PeftModel peft, DenseTrainResult training, DenseEvaluation evaluation, DenseSplit evalSplit) : IDisposable
{
    public DenseModel Model { get; } = model;
    public PeftModel Peft { get; } = peft;
    public DenseTrainResult Training { get; } = training;
    public DenseEvaluation Evaluation { get; } = evaluation;
    public DenseSplit EvalSplit { get; } = evalSplit;
    public void Dispose() => Model.Dispose();
}

/// <summary>Training and scoring one dense run (no database; <see cref="DenseRunRequest"/> is the job the results
/// store's executor runs), its adapter files and the pictures it keeps.</summary>
public static class DenseRuns
{
    public const int PictureImages = 4;

    /// <summary>Trains and scores one run (no database).</summary>
    public static DenseRunProduct Train(DenseRunRequest request, Device device, IProgress<TrainProgress>? progress = null, TrainCheckpoint? checkpoint = null)
    {
        var spec = request.Spec;
        var train = request.Spec.TrainSplit.Split('+')
            .Select(s => request.Task.Split(s, request.ImageSize).Take(s == "val" ? request.ValImages ?? request.TrainImages : request.TrainImages))
            .Aggregate((a, b) => a.Concat(b));
        var eval = request.Task.Split(spec.EvalSplit, request.ImageSize).Take(request.EvalImages);
        manual_seed(spec.Seed);
        var backbone = request.LoadBackbone();
        var model = new DenseModel(backbone, request.Task.Kind, train.ClassNames.Count, request.SegHead);
        try
        {
            backbone.to(device);
            model.decode_head.to(device);
            var peft = PeftModel.Create(backbone, spec.Method, request.Settings);
            var trainer = new DenseTrainer(model, peft, request.Train, device, request.HeadLr);
            var trained = trainer.Fit(train, progress, checkpoint);
            var evaluation = DenseTrainer.Evaluate(model, eval, Data.Normalization.FromName(request.Train.Normalization), device, request.Train.EvalBatchSize ?? 64);
            return new DenseRunProduct(model, peft, trained, evaluation, eval);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The trained model as a dense adapter folder (<see cref="DenseAdapter"/>: the method's files, the head,
    /// the input size, normalisation and class names) and the run's identity (run.json).</summary>
    public static void SaveAdapter(DenseRunProduct product, DenseRunRequest request, string directory)
    {
        DenseAdapter.Save(product.Model, product.Peft, directory, request.Backbone.Checkpoint, request.Head, request.ImageSize,
                          Data.Normalization.FromName(request.Train.Normalization), product.EvalSplit.ClassNames);
        File.WriteAllText(Path.Combine(directory, "run.json"), request.Spec.IdentityJson());
    }

    /// <summary>The first test images' predictions: class maps (base64) or detections [x, y, w, h, class, score].</summary>
    public static JsonObject Pictures(DenseEvaluation e)
    {
        if (e.ClassMaps != null)
            return new JsonObject { ["maps"] = new JsonArray(e.ClassMaps.Take(PictureImages).Select(m => (JsonNode)Convert.ToBase64String(m)).ToArray()) };
        return new JsonObject
        {
            ["detections"] = new JsonArray(e.Detections!.Take(PictureImages).Select(list => (JsonNode)new JsonArray(
                list.Where(d => d.Score >= 0.3).Select(d => (JsonNode)new JsonArray(d.X, d.Y, d.W, d.H, d.Label, Math.Round(d.Score, 3))).ToArray())).ToArray()),
        };
    }
}
