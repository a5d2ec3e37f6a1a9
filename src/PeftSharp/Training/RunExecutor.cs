using System.Reflection;
using System.Text.Json.Nodes;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Training;

/// <summary>Everything one run needs: its identity, the backbone, the method and the data.</summary>
public sealed record RunRequest(
    RunSpec Spec, BackboneSpec Backbone, IReadOnlyDictionary<string, string> Settings, TrainOptions Train,
    DataLoader TrainData, DataLoader EvalData, int NumClasses, string DatasetPath)
{
    /// <summary>What the model sees of an image in this run (evaluation applies the same).</summary>
    public Data.Preprocessing Preprocessing => new(TrainData.Options.ImageSize, TrainData.Options.Normalization);

    /// <summary>Saves the run's trained model as adapter files that record the base checkpoint, the preprocessing
    /// and the class names, so that evaluating them reproduces this run's numbers.</summary>
    public void SaveAdapter(PeftModel model, string directory) =>
        AdapterFiles.Save(model, directory, Backbone.Checkpoint, Preprocessing, TrainData.Dataset.ClassNames);
}

/// <summary>Hears what a run executor does (the CLI draws progress bars from it).</summary>
public interface IRunObserver
{
    void RunStarting(RunSpec spec, string label);
    void RunSkipped(RunRecord finished, string label);
    void Training(TrainProgress progress);
    void RunFinished(RunRecord record, string label);
    void RunFailed(RunSpec spec, string label, string error);
}

/// <summary>
/// Executes runs against the results database: a finished run with the same key is reused, never retrained; a run
/// killed mid-way resumes from its last epoch checkpoint; the result (metrics, every example's logits) lands in one
/// transaction, so an interruption loses at most the run in flight.
/// </summary>
public sealed class RunExecutor
{
    readonly IResultsStore db;
    readonly Device device;
    readonly string checkpointRoot;
    readonly IRunObserver? observer;

    public RunExecutor(IResultsStore db, Device device, IRunObserver? observer = null, string? checkpointRoot = null)
    {
        this.db = db;
        this.device = device;
        this.observer = observer;
        // Beside a SQLite file; for a database server, under the working directory (on a cluster, put it on a shared
        // file system so a reclaimed run resumes where its dead worker stopped).
        this.checkpointRoot = checkpointRoot ?? Path.Combine(db.LocalFolder ?? Environment.CurrentDirectory, "peftsharp-checkpoints");
    }

    /// <summary>False: a run that is not finished in the database is an error naming it, not trained (for reading
    /// studies out of an existing database).</summary>
    public bool TrainMissing { get; init; } = true;

    /// <summary>Where per-run epoch checkpoints live (one folder per run key, deleted when the run finishes).</summary>
    public string CheckpointRoot => checkpointRoot;

    public static string CodeVersion { get; } =
        typeof(RunExecutor).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>Runs (or reuses) one run; a training failure is recorded and returned as a failed record.</summary>
    public RunRecord Execute(RunRequest request, string label, Func<PeftModel, EvaluationResult, RunRecord, RunRecord>? after = null)
    {
        var spec = request.Spec;
        string key = spec.Key;
        if (db.TryGetFinished(key) is RunRecord done)
        {
            observer?.RunSkipped(done, label);
            return done;
        }
        if (!TrainMissing)
            throw new PeftSharpException($"{db.Location}: no finished run for {label} ({spec.Method} on {spec.Dataset}, {spec.TrainSplit}, lr {spec.Lr:G3}), and training missing runs is off");
        observer?.RunStarting(spec, label);
        long id = db.BeginRun(spec, new RunContext { DatasetPath = request.DatasetPath, CodeVersion = CodeVersion });
        var checkpoint = new TrainCheckpoint(Path.Combine(checkpointRoot, key));
        try
        {
            manual_seed(spec.Seed);
            using var model = request.Backbone.Load(request.NumClasses, request.Train.DropPath, out _);
            model.to(device);
            var peft = PeftModel.Create(model, spec.Method, request.Settings);
            var trainer = new Trainer(peft, request.Train, device);
            var trained = trainer.Fit(request.TrainData, observer == null ? null : new Progress(observer), checkpoint);
            var evaluation = Evaluator.Evaluate(model, request.EvalData, device, precision: request.Train.Precision);
            // Weights can blow up without the training loss overflowing (a huge lr): then the logits are not finite.
            if (!double.IsFinite(evaluation.Metrics.Loss))
                throw new PeftSharpException($"{Trainer.DivergedMessage}: the trained model's evaluation loss is {evaluation.Metrics.Loss} (its logits are not finite) at learning rate {request.Train.Lr:G3}; lower the learning rate (lr) or clip gradients (grad_clip)");
            var metrics = evaluation.Metrics.ToJson();
            metrics["epoch_losses"] = new JsonArray(trained.EpochLosses.Select(l => (JsonNode)JsonValue.Create(l)!).ToArray());
            metrics["feature_cache"] = trained.UsedFeatureCache;
            metrics["first_trainable_block"] = trained.FirstTrainableBlock;
            if (peft.PrePasses.Any()) metrics["prepass_seconds"] = trained.PrePassSeconds;   // part of TrainSeconds
            var outcome = new RunOutcome
            {
                Top1 = evaluation.Metrics.Top1 / 100.0, MetricsJson = metrics.ToJsonString(),
                TrainableParams = peft.CountTrainable(), TrainSeconds = trained.Seconds, EvalSeconds = evaluation.Seconds,
                ImagesPerSecond = trained.ImagesPerSecond,
            };
            db.FinishRun(id, outcome, Predictions(evaluation));
            checkpoint.Delete();
            var record = db.TryGetRun(id)!;
            observer?.RunFinished(record, label);
            return after?.Invoke(peft, evaluation, record) ?? record;
        }
        catch (PeftSharpException e)
        {
            db.FailRun(id, e.Message);
            observer?.RunFailed(spec, label, e.Message);
            return db.TryGetRun(id)!;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            db.FailRun(id, $"{e.GetType().Name}: {e.Message}");
            throw;
        }
    }

    /// <summary>Stores an evaluation that trained nothing (a model evaluated again, on another split or with other
    /// weights) as a finished run of <paramref name="spec"/>, with its metrics and every prediction, in one
    /// transaction; an evaluation already stored under the same key is returned as it is.</summary>
    public static RunRecord RecordEvaluation(IResultsStore db, RunSpec spec, EvaluationResult evaluation, string datasetPath, long trainableParams = 0)
    {
        if (db.TryGetFinished(spec.Key) is RunRecord done) return done;
        long id = db.BeginRun(spec, new RunContext { DatasetPath = datasetPath, CodeVersion = CodeVersion });
        var outcome = new RunOutcome
        {
            Top1 = evaluation.Metrics.Top1 / 100, MetricsJson = evaluation.Metrics.ToJson().ToJsonString(),
            TrainableParams = trainableParams, EvalSeconds = evaluation.Seconds,
        };
        db.FinishRun(id, outcome, Predictions(evaluation));
        return db.TryGetRun(id)!;
    }

    /// <summary>Every example's label, prediction and logits, as the results database stores them.</summary>
    public static List<Prediction> Predictions(EvaluationResult evaluation)
    {
        int classes = evaluation.Logits.GetLength(1);
        var list = new List<Prediction>(evaluation.Labels.Length);
        for (int i = 0; i < evaluation.Labels.Length; i++)
        {
            var row = new float[classes];
            for (int c = 0; c < classes; c++) row[c] = evaluation.Logits[i, c];
            list.Add(new Prediction(evaluation.Indices[i], (int)evaluation.Labels[i], evaluation.Predicted(i), row));
        }
        return list;
    }

    sealed class Progress : IProgress<TrainProgress>
    {
        readonly IRunObserver observer;
        public Progress(IRunObserver observer) => this.observer = observer;
        public void Report(TrainProgress value) => observer.Training(value);
    }
}
