using PeftSharp.Data;
using PeftSharp.Results;
using PeftSharp.Tuners;

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
        var trainData = TrainingData.Loader(trainSet, size, train, shuffle: true);
        try
        {
            var evalData = TrainingData.Loader(evalSet, size, train, shuffle: false);
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
