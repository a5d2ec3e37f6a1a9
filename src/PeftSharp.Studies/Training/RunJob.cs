using System.Text.Json.Nodes;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Training;

/// <summary>
/// One run of any task family as <see cref="RunExecutor"/> executes it: its identity and a way to train and score it.
/// Classification's <see cref="RunRequest"/> is one; dense prediction and video add theirs, and every family's runs
/// are then stored, resumed, leased and kept as artefacts the same way.
/// </summary>
public interface IRunJob
{
    RunSpec Spec { get; }

    /// <summary>Where the data lies (stored with the run, not part of its identity).</summary>
    string DatasetPath { get; }

    /// <summary>Trains and evaluates. <paramref name="checkpoint"/> is where epoch checkpoints go (a killed run resumes
    /// from them); <paramref name="progress"/> hears every step.</summary>
    RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint);
}

/// <summary>A job whose training may start with a method's pre-pass (<see cref="IPrePass"/>): the executor gives it the
/// results store's stored passes (<see cref="PrePassRuns"/>), so a grid over learning rates runs each pass once.</summary>
public interface IPrePassJob : IRunJob
{
    /// <summary>As <see cref="IRunJob.Run"/>, looking the pre-pass up in <paramref name="prePasses"/> and keeping it there.</summary>
    RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint, IPrePassStore? prePasses);
}

/// <summary>What a job's run produced: the outcome and predictions to store, the trained method (for its adapter
/// artefact) and, for classification, the evaluation. Owns the trained model.</summary>
public sealed class RunProduct(RunOutcome outcome, IReadOnlyList<Prediction> predictions, PeftModel? peft,
                               Action<string>? saveAdapter, IDisposable owner) : IDisposable
{
    public RunOutcome Outcome { get; } = outcome;
    public IReadOnlyList<Prediction> Predictions { get; } = predictions;
    /// <summary>The trained method (null when nothing trained, e.g. a zero-shot evaluation).</summary>
    public PeftModel? Peft { get; } = peft;

    /// <summary>The classification evaluation (every example's logits), when the family is classification.</summary>
    public EvaluationResult? Evaluation { get; init; }

    /// <summary>True when there are adapter files to save.</summary>
    public bool HasAdapter => saveAdapter != null;

    /// <summary>Writes the trained method as adapter files (what <c>--save-adapter</c> and the stored artefact hold).</summary>
    public void SaveAdapter(string directory) =>
        (saveAdapter ?? throw new PeftSharpException($"{directory}: this run trained nothing, so it has no adapter to save"))(directory);

    public void Dispose() => owner.Dispose();

    /// <summary>The training record's fields every family stores beside its metrics.</summary>
    public static void AddTraining(JsonObject metrics, TrainResult trained, PeftModel peft)
    {
        metrics["epoch_losses"] = new JsonArray(trained.EpochLosses.Select(l => (JsonNode)JsonValue.Create(l)!).ToArray());
        metrics["feature_cache"] = trained.UsedFeatureCache;
        metrics["first_trainable_block"] = trained.FirstTrainableBlock;
        if (peft.PrePasses.Any())
        {
            metrics["prepass_seconds"] = trained.PrePassSeconds;   // part of TrainSeconds, unless reused
            metrics["prepass_reused"] = trained.PrePassReused;     // from the stored pre-pass run (PrePassRuns)
        }
    }
}
