using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Models;
using PeftSharp.Results;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Training;

/// <summary>
/// One run outside the study protocol: a method trained on one split of a task and scored on another (by default
/// the task's training split and its test split). Owns the two loaders its request reads; dispose it when done.
/// </summary>
public sealed class SingleRun : IDisposable
{
    SingleRun(RunRequest request) => Request = request;

    public RunRequest Request { get; }

    /// <summary>The run's identity and request: the resolved hyperparameters, the training settings, the backbone's
    /// and the images' fingerprints (so a stored run is reused only for the same images), and the two loaders with
    /// the preprocessing the backbone expects.</summary>
    public static SingleRun Create(ImageTask task, string method, IReadOnlyDictionary<string, string>? settings, TrainOptions train,
                                   BackboneSpec backbone, string? trainSplit = null, string? evalSplit = null)
    {
        settings ??= new Dictionary<string, string>();
        TunerRegistry.ResolveHypers(method, settings);   // a bad method or setting fails before any image is decoded
        trainSplit ??= task.TrainValName;
        evalSplit ??= task.TestName;
        ImageDataset trainSet = task.Split(trainSplit), evalSet = task.Split(evalSplit);
        var spec = RunSpecs.Trained(RunStage.Single, task.Name, trainSplit, evalSplit, method, settings, train,
                                    RunSpecs.DataIdentity(trainSet, evalSet, task.Directory), backbone.ModelJson, backbone.CheckpointIdentity());
        int size = backbone.ImageSize();
        var trainData = StudyProtocol.Loader(trainSet, size, train, shuffle: true);
        try
        {
            var evalData = StudyProtocol.Loader(evalSet, size, train, shuffle: false);
            return new SingleRun(new RunRequest(spec, backbone, settings, train, trainData, evalData, task.NumClasses, task.Directory));
        }
        catch
        {
            trainData.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Request.TrainData.Dispose();
        Request.EvalData.Dispose();
    }
}

/// <summary>What one run's training produced: the model with its method applied, the training record and the score on
/// the evaluation split. Owns the model.</summary>
public sealed class TrainedRun(VisionTransformer model, PeftModel peft, TrainResult training, EvaluationResult evaluation, RunRequest request) : IDisposable
{
    public VisionTransformer Model { get; } = model;
    public PeftModel Peft { get; } = peft;
    public TrainResult Training { get; } = training;
    /// <summary>The evaluation split's metrics and every example's logits.</summary>
    public EvaluationResult Evaluation { get; } = evaluation;
    public RunRequest Request { get; } = request;

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
    public static TrainedRun Train(RunRequest request, Device device, IProgress<TrainProgress>? progress = null, TrainCheckpoint? checkpoint = null,
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
    public static (VisionTransformer Model, PeftModel Peft) Prepare(RunRequest request, Device device)
    {
        manual_seed(request.Spec.Seed);
        var model = request.Backbone.Load(request.NumClasses, request.Train.DropPath, out _);
        try
        {
            model.to(device);
            return (model, PeftModel.Create(model, request.Spec.Method, request.Settings));
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
/// with no results store (the CLI's <c>train</c> stores the same run; see <see cref="RunExecutor"/>).
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
        train ??= new TrainOptions { Normalization = backbone.RecordedNormalization() ?? "none" };
        using var run = SingleRun.Create(task, method, settings, train.Validate(), backbone);
        return TrainedRun.Train(run.Request, device ?? CPU, progress);
    }
}
