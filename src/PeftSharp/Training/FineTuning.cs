using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Training;

/// <summary>Everything one fine-tuning needs: the backbone, the method and its settings, the training settings, the
/// data (training and evaluation loaders) and the seed that draws the head and the method's initial weights.</summary>
public sealed record TrainingRequest(
    BackboneSpec Backbone, string Method, IReadOnlyDictionary<string, string> Settings, TrainOptions Train,
    DataLoader TrainData, DataLoader EvalData, int NumClasses, long Seed)
{
    /// <summary>What the model sees of an image in this run (evaluation applies the same).</summary>
    public Preprocessing Preprocessing => new(TrainData.Options.ImageSize, TrainData.Options.Normalization);

    /// <summary>Saves the trained model as adapter files that record the base checkpoint, the preprocessing and the
    /// class names, so that evaluating them reproduces this run's numbers.</summary>
    public void SaveAdapter(PeftModel model, string directory) =>
        AdapterFiles.Save(model, directory, Backbone.Checkpoint, Preprocessing, TrainData.Dataset.ClassNames);
}

/// <summary>The loaders of a fine-tuning: training batches shuffled (and augmented where the options say so), evaluation
/// batches in file order.</summary>
public static class TrainingData
{
    public static DataLoader Loader(ImageDataset data, int imageSize, TrainOptions train, bool shuffle) =>
        new(data, new DataLoaderOptions
        {
            ImageSize = imageSize, BatchSize = shuffle ? train.BatchSize : train.EvalBatchSize ?? train.BatchSize, Shuffle = shuffle, Seed = train.Seed,
            Normalization = Normalization.FromName(train.Normalization),
            Augmentation = shuffle && train.Augment ? Augmentation.ManyShot : null,
        });
}

/// <summary>What one run's training produced: the model with its method applied, the training record and the score on
/// the evaluation split. Owns the model.</summary>
public sealed class TrainedRun(VisionTransformer model, PeftModel peft, TrainResult training, EvaluationResult evaluation, TrainingRequest request) : IDisposable
{
    public VisionTransformer Model { get; } = model;
    public PeftModel Peft { get; } = peft;
    public TrainResult Training { get; } = training;
    /// <summary>The evaluation split's metrics and every example's logits.</summary>
    public EvaluationResult Evaluation { get; } = evaluation;
    public TrainingRequest Request { get; } = request;

    /// <summary>Adapter files that record the base, the preprocessing and the class names (eval, predict and merge
    /// read them back to the same numbers).</summary>
    public void SaveAdapter(string directory) => Request.SaveAdapter(Peft, directory);

    public void Dispose() => Model.Dispose();

    /// <summary>
    /// The one way a run is trained and scored, for the results-store executor and the library alike: seed, load the
    /// backbone with a head for the task, apply the method, fit, evaluate in the run's precision. A model whose
    /// evaluation loss is not finite diverged, which is an error naming the learning rate.
    /// </summary>
    /// <param name="prePasses">Where a method's pre-pass result is looked up and kept (null: the pass always runs).</param>
    public static TrainedRun Train(TrainingRequest request, Device device, IProgress<TrainProgress>? progress = null, TrainCheckpoint? checkpoint = null,
                                   IPrePassStore? prePasses = null)
    {
        var (model, peft) = Prepare(request, device);
        try
        {
            var trained = new Trainer(peft, request.Train, device) { PrePassStore = prePasses }.Fit(request.TrainData, progress, checkpoint);
            var evaluation = Evaluator.Evaluate(model, request.EvalData, device, precision: request.Train.Precision);
            // Weights can blow up without the training loss overflowing (a huge lr): then the logits are not finite.
            if (!double.IsFinite(evaluation.Metrics.Loss))
                throw new PeftSharpException($"{Trainer.DivergedMessage}: the trained model's evaluation loss is {evaluation.Metrics.Loss} (its logits are not finite) at learning rate {request.Train.Lr:G3}; lower the learning rate (lr) or clip gradients (grad_clip)");
            return new TrainedRun(model, peft, trained, evaluation, request);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The run's model before training, with the same random draws as <see cref="Train"/> (seed, backbone with a
    /// fresh head, method applied): a study that needs a run's initial weights rebuilds them here.</summary>
    public static (VisionTransformer Model, PeftModel Peft) Prepare(TrainingRequest request, Device device)
    {
        manual_seed(request.Seed);
        var model = request.Backbone.Load(request.NumClasses, request.Train.DropPath, out _);
        try
        {
            model.to(device);
            return (model, PeftModel.Create(model, request.Method, request.Settings));
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>
/// The library's plain entry point: fine-tune a method on a task's training split and score it on its test split,
/// with no results store (the peftsharp tool's <c>train</c> trains the same way and stores the run).
/// </summary>
public static class FineTuning
{
    /// <summary>The same with a typed method configuration (<c>new LoraConfig { Rank = 8 }</c>).</summary>
    public static TrainedRun Run(ImageTask task, MethodConfig method, TrainOptions? train = null, BackboneSpec? backbone = null,
                                 Device? device = null, IProgress<TrainProgress>? progress = null) =>
        Run(task, method.Method, method.Settings(), train, backbone, device, progress);

    /// <param name="backbone">Null: the shipped pretrained backbone.</param>
    /// <param name="train">Null: the study's defaults, with the normalisation the backbone records.</param>
    public static TrainedRun Run(ImageTask task, string method, IReadOnlyDictionary<string, string>? settings = null, TrainOptions? train = null,
                                 BackboneSpec? backbone = null, Device? device = null, IProgress<TrainProgress>? progress = null)
    {
        backbone ??= BackboneSpec.OrShipped(null, null, null);
        train = (train ?? new TrainOptions { Normalization = backbone.RecordedNormalization() ?? "none" }).Validate();
        settings ??= new Dictionary<string, string>();
        TunerRegistry.ResolveHypers(method, settings);   // a bad method or setting fails before any image is decoded
        int size = backbone.ImageSize();
        using var trainData = TrainingData.Loader(task.Split(task.TrainValName), size, train, shuffle: true);
        using var evalData = TrainingData.Loader(task.Split(task.TestName), size, train, shuffle: false);
        var request = new TrainingRequest(backbone, method, settings, train, trainData, evalData, task.NumClasses, train.Seed);
        return TrainedRun.Train(request, device ?? CPU, progress);
    }
}
