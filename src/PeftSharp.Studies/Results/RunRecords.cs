namespace PeftSharp.Results;

public enum RunStatus { Running, Finished, Failed }

/// <summary>Where and how a run was executed; stored with the run but not part of its identity.</summary>
public sealed record RunContext
{
    public required string DatasetPath { get; init; }
    public required string CodeVersion { get; init; }
    public string Host { get; init; } = Environment.MachineName;
}

/// <summary>What a finished run measured.</summary>
public sealed record RunOutcome
{
    /// <summary>The family's primary metric on the evaluation split as a fraction in [0, 1]: top-1 accuracy for
    /// classification and video, mIoU or COCO AP for dense prediction (MetricsJson's "metric" names it when it is not top-1).</summary>
    public required double Top1 { get; init; }
    /// <summary>Everything else (per-class accuracy, ECE, confusion matrix, loss curve …) as a JSON object.</summary>
    public string MetricsJson { get; init => field = CanonicalJson.NormalizeObject(value, "run outcome 'metrics'"); } = "{}";
    public required long TrainableParams { get; init; }
    public double TrainSeconds { get; init; }
    public double EvalSeconds { get; init; }
    /// <summary>Training throughput.</summary>
    public double ImagesPerSecond { get; init; }

    internal void Validate()
    {
        if (!(Top1 >= 0 && Top1 <= 1)) throw new ArgumentOutOfRangeException(nameof(Top1), Top1, "top-1 must be a fraction in [0, 1]");
        if (TrainableParams < 0) throw new ArgumentOutOfRangeException(nameof(TrainableParams), TrainableParams, "must be >= 0");
        foreach (var (name, v) in new[] { (nameof(TrainSeconds), TrainSeconds), (nameof(EvalSeconds), EvalSeconds), (nameof(ImagesPerSecond), ImagesPerSecond) })
            if (!double.IsFinite(v) || v < 0) throw new ArgumentOutOfRangeException(name, v, "must be a finite number >= 0");
    }
}

/// <summary>One row of the runs table. <see cref="Outcome"/> is set exactly when the run finished.</summary>
public sealed record RunRecord(
    long Id, string Key, RunSpec Spec, RunContext Context, RunStatus Status, RunOutcome? Outcome,
    DateTime StartedUtc, DateTime? FinishedUtc, string? Error)
{
    public double? Top1 => Outcome?.Top1;
}

/// <summary>What <see cref="IResultsStore.TryBeginRun"/> did: <see cref="Begun"/> a run of this owner's (its
/// <see cref="Id"/>), or found the key held by run <see cref="Id"/> (finished, or running under
/// <see cref="Owner"/>'s live lease).</summary>
public sealed record RunStart(long Id, bool Begun, RunStatus Status, string? Owner);

/// <summary>A stored artefact of a run: what kind, its content's SHA-256 (lower-case hex) and size.</summary>
public sealed record ArtifactInfo(long RunId, string Kind, string Sha256, long Bytes);

/// <summary>Which runs to list; a null field matches every run.</summary>
public sealed record RunFilter(
    string? Dataset = null, string? Method = null, RunStage? Stage = null, RunStatus? Status = null, string? SweepId = null,
    string? Family = null)
{
    public static readonly RunFilter All = new();
}

/// <summary>The words stored in the database for the enums (lower case, stable across renames of the C# members).</summary>
internal static class RunNames
{
    public static string Of(RunStage s) => s switch
    {
        RunStage.Search => "search",
        RunStage.Final => "final",
        RunStage.Single => "single",
        _ => throw new ArgumentOutOfRangeException(nameof(s), s, null),
    };

    public static string Of(RunStatus s) => s switch
    {
        RunStatus.Running => "running",
        RunStatus.Finished => "finished",
        RunStatus.Failed => "failed",
        _ => throw new ArgumentOutOfRangeException(nameof(s), s, null),
    };

    public static RunStage Stage(string text) => text switch
    {
        "search" => RunStage.Search,
        "final" => RunStage.Final,
        "single" => RunStage.Single,
        _ => throw new InvalidDataException($"unknown run stage '{text}' in the results database"),
    };

    public static RunStatus Status(string text) => text switch
    {
        "running" => RunStatus.Running,
        "finished" => RunStatus.Finished,
        "failed" => RunStatus.Failed,
        _ => throw new InvalidDataException($"unknown run status '{text}' in the results database"),
    };
}
