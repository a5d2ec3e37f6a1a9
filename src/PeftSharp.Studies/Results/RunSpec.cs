using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace PeftSharp.Results;

/// <summary>What a run trains on and evaluates on (the study protocol's two stages, or an ad-hoc run).</summary>
public enum RunStage
{
    /// <summary>Train on train800, evaluate on val200: one point of the lr × wd × method grid.</summary>
    Search,
    /// <summary>Retrain the chosen configuration on train800val200, evaluate on test.</summary>
    Final,
    /// <summary>An ad-hoc train/eval run outside the protocol.</summary>
    Single,
}

/// <summary>
/// The identity of a run: everything that determines its result. Two specs with the same <see cref="Key"/> are the
/// same experiment, so a finished run with that key can be reused instead of retrained. The JSON fields are stored
/// canonically (sorted keys, one spelling per number), so their key order and number formatting do not matter.
/// Deliberately not part of the identity (see <see cref="RunContext"/>): where the dataset lies on disk, the code
/// version and the host — moving the data folder or fixing a typo in the CLI must not invalidate a finished sweep.
/// </summary>
public sealed record RunSpec
{
    /// <summary>Bumped if the set or meaning of identity fields changes, so old keys can never collide with new ones.</summary>
    const int KeyVersion = 1;
    public const string RandomInit = Checkpoints.CheckpointIdentity.RandomInit;

    public required RunStage Stage { get; init; }
    public required string Dataset { get; init; }
    public required string TrainSplit { get; init; }
    public required string EvalSplit { get; init; }
    public required string Method { get; init; }
    /// <summary>The method's full hyperparameters (defaults filled in) as a JSON object.</summary>
    public string HyperJson { get; init => field = CanonicalJson.NormalizeObject(value, "run spec 'hyper'"); } = "{}";
    public required double Lr { get; init; }
    public required double WeightDecay { get; init; }
    public required int Seed { get; init; }
    public required int Epochs { get; init; }
    public required int BatchSize { get; init; }
    /// <summary>Other training settings (label smoothing, drop path, warm-up, schedule, augmentation …) as a JSON object.</summary>
    public string TrainingJson { get; init => field = CanonicalJson.NormalizeObject(value, "run spec 'training'"); } = "{}";
    /// <summary>The model preset and/or configuration as a JSON object.</summary>
    public string ModelJson { get; init => field = CanonicalJson.NormalizeObject(value, "run spec 'model'"); } = "{}";
    /// <summary>"file-name sha256:hex" of the pretrained weights (see <see cref="Checkpoints.CheckpointIdentity"/>) or "random-init".</summary>
    public string Checkpoint { get; init; } = RandomInit;
    /// <summary>The task family: "classification" (the default; left out of the key, so classification keys are what
    /// they were before families existed), "dense-seg", "dense-det", "video" …</summary>
    public string Family { get; init; } = Classification;
    public const string Classification = "classification";

    /// <summary>Groups the runs of one tune invocation; part of the identity so a sweep resumes only its own runs.</summary>
    public string? SweepId { get; init; }

    /// <summary>The run key: lowercase hex SHA-256 of the canonical JSON of all identity fields.</summary>
    public string Key => KeyOf(this);

    public static string KeyOf(RunSpec spec)
    {
        spec.Validate();
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(spec.IdentityJson()));
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>The identity fields as canonical JSON (what <see cref="Key"/> hashes).</summary>
    public string IdentityJson()
    {
        var o = new JsonObject
        {
            ["key_version"] = KeyVersion,
            ["stage"] = RunNames.Of(Stage),
            ["dataset"] = Dataset,
            ["train_split"] = TrainSplit,
            ["eval_split"] = EvalSplit,
            ["method"] = Method,
            ["hyper"] = JsonNode.Parse(HyperJson),
            ["lr"] = Lr,
            ["weight_decay"] = WeightDecay,
            ["seed"] = Seed,
            ["epochs"] = Epochs,
            ["batch_size"] = BatchSize,
            ["training"] = JsonNode.Parse(TrainingJson),
            ["model"] = JsonNode.Parse(ModelJson),
            ["checkpoint"] = Checkpoint,
            ["sweep_id"] = SweepId,
        };
        if (Family != Classification) o["family"] = Family;
        return CanonicalJson.NormalizeObject(o.ToJsonString(), "run spec");
    }

    /// <summary>Throws a <see cref="PeftSharpException"/> naming the first field that is missing or out of range.</summary>
    public void Validate()
    {
        Require(Dataset, "dataset");
        Require(TrainSplit, "train split");
        Require(EvalSplit, "eval split");
        Require(Method, "method");
        Require(Checkpoint, "checkpoint");
        Require(Family, "family");
        if (SweepId is not null) Require(SweepId, "sweep id");
        if (!double.IsFinite(Lr) || Lr < 0) throw Invalid("lr", "a finite number >= 0", Lr);
        if (!double.IsFinite(WeightDecay) || WeightDecay < 0) throw Invalid("weight decay", "a finite number >= 0", WeightDecay);
        if (Epochs < 0) throw Invalid("epochs", "an integer >= 0", Epochs);
        if (BatchSize < 1) throw Invalid("batch size", "an integer >= 1", BatchSize);
    }

    static void Require(string? value, string field)
    {
        if (string.IsNullOrWhiteSpace(value)) throw new PeftSharpException($"run spec: '{field}' must not be empty");
    }

    static PeftSharpException Invalid(string field, string expected, double got) =>
        new($"run spec: '{field}' must be {expected}, got {got.ToString(CultureInfo.InvariantCulture)}");
}
