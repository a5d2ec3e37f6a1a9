using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Video;

/// <summary>
/// One video run as <see cref="RunExecutor"/> executes it (family "video"): train the method on the task's train list,
/// score on its test list (top-1 is the stored primary metric), and also record the val top-1 that selects the learning
/// rate, top-5, the frame-shuffle control (test top-1 with each clip's frames permuted), the data time per step and
/// the peak memory.
/// </summary>
public sealed class VideoRunJob : IRunJob
{
    public VideoRunJob(VideoTask task, string method, IReadOnlyDictionary<string, string>? settings, TrainOptions train,
                       VideoBackbone backbone, VideoDataOptions data, int workers = 2)
    {
        Task = task;
        Method = method;
        Settings = settings ?? new Dictionary<string, string>();
        Train = train.Validate();
        Backbone = backbone;
        Data = data;
        Workers = workers;
        var spec = RunSpecs.Trained(RunStage.Single, task.Name, "train", "test", method, Settings, Train, Fingerprint(task),
                                    backbone.ModelJson, PeftSharp.Checkpoints.CheckpointIdentity.Of(backbone.Checkpoint), family: Family);
        var training = JsonNode.Parse(spec.TrainingJson)!.AsObject();
        training["clips"] = data.ToJson();   // frames, sampling, size: what the model sees of a clip
        training["schedule"] = "per-step";   // VideoTrainer.Schedule, not the image trainer's per-epoch steps
        Spec = spec with { TrainingJson = training.ToJsonString() };
    }

    public const string Family = "video";

    public VideoTask Task { get; }
    public string Method { get; }
    public IReadOnlyDictionary<string, string> Settings { get; }
    public TrainOptions Train { get; }
    public VideoBackbone Backbone { get; }
    public VideoDataOptions Data { get; }
    public int Workers { get; }
    public RunSpec Spec { get; }
    public string DatasetPath => Task.Directory;

    public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint)
    {
        manual_seed(Spec.Seed);
        var norm = Normalization.FromName(Train.Normalization);
        var transform = Data.Transform with { Normalization = norm };
        var trainSet = Task.Split("train", Data.Sampler, transform with { TestClips = 1, TestCrops = 1 });
        var valSet = Task.HasVal ? Task.Split("val", Data.Sampler, transform) : null;
        var testSet = Task.Split("test", Data.Sampler, transform);
        var model = Backbone.Load(Task.NumClasses, Train.DropPath);
        try
        {
            model.to(device);
            var peft = PeftModel.Create(model, Method, Settings);
            var trainLoader = new ClipLoader(trainSet, Train.BatchSize, train: true, Spec.Seed, workers: Workers);
            var trained = VideoTrainer.Fit(peft, model, trainLoader, Train, device, progress, checkpoint);
            int evalBatch = Train.EvalBatchSize ?? Train.BatchSize;
            var test = VideoTrainer.Evaluate(model, new ClipLoader(testSet, evalBatch, train: false, Spec.Seed, workers: Workers), device);
            if (!double.IsFinite(test.Loss))
                throw new PeftSharpException($"{OptimizerSteps.DivergedMessage}: the trained model's test loss is {test.Loss} at learning rate {Train.Lr:G3}; lower the learning rate (lr)");
            var val = valSet is null ? null : VideoTrainer.Evaluate(model, new ClipLoader(valSet, evalBatch, train: false, Spec.Seed, workers: Workers), device);
            var shuffled = VideoTrainer.Evaluate(model, new ClipLoader(
                new ClipDataset(testSet.Entries, testSet.NumClasses, testSet.Sampler, testSet.Transform, testSet.Source) { ShuffleFrames = true },
                evalBatch, train: false, Spec.Seed, workers: Workers), device);
            var metrics = new JsonObject
            {
                ["metric"] = "top1", ["top5"] = test.Top5, ["val_top1"] = val?.Top1, ["shuffled_top1"] = shuffled.Top1,
                ["test_loss"] = test.Loss, ["data_ms_per_step"] = trained.DataMsPerStep, ["step_ms"] = trained.StepMs,
                ["peak_rss_bytes"] = trained.PeakRssBytes, ["total_params"] = peft.CountTotal(),
                ["trainable_with_head"] = peft.CountTrainable(includeHead: true), ["views"] = testSet.Transform.Views,
                ["epoch_losses"] = new JsonArray(trained.EpochLosses.Select(l => (JsonNode)JsonValue.Create(l)!).ToArray()),
                ["first_trainable_block"] = trained.FirstTrainableBlock,
            };
            var outcome = new RunOutcome
            {
                Top1 = test.Top1, MetricsJson = metrics.ToJsonString(), TrainableParams = peft.CountTrainable(),
                TrainSeconds = trained.Seconds, EvalSeconds = test.Seconds, ImagesPerSecond = trained.ClipsPerSecond,
            };
            var data = Data with { Transform = transform };
            return new RunProduct(outcome, test.Predictions, peft, dir => SaveAdapter(peft, data, evalBatch, dir), model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The trained tensors as adapter files (<see cref="VideoAdapter"/>: base, clip settings, class names) and
    /// the run's identity (run.json).</summary>
    void SaveAdapter(PeftModel peft, VideoDataOptions data, int evalBatch, string directory)
    {
        VideoAdapter.Save(peft, directory, Backbone, data, Task.Classes, evalBatch);
        File.WriteAllText(Path.Combine(directory, "run.json"), Spec.IdentityJson());
    }

    /// <summary>The task's identity: a hash of its task.json and list files (the built-in clips are generated from them) and
    /// of a user's clip root.</summary>
    static string Fingerprint(VideoTask task)
    {
        var text = new StringBuilder();
        foreach (var file in new[] { Path.Combine(task.Directory, "task.json"), task.TrainList, task.ValList, task.TestList })
            text.Append(file is not null && File.Exists(file) ? File.ReadAllText(file) : "").Append('\0');
        // A user's lists name clips relative to their root: the same lists under another root are other clips.
        if (Path.GetFullPath(task.FramesRoot) != Path.GetFullPath(Path.Combine(task.Directory, "frames")))
            text.Append("root:").Append(Path.GetFullPath(task.FramesRoot));
        return "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }
}
