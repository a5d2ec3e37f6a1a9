using System.Text.Json;
using PeftSharp.Training;

namespace PeftSharp.Sweeps;

/// <summary>
/// A tune request as the queue stores it, so a worker on another host rebuilds exactly the runs the plan made
/// (doubles round-trip exactly, so the keys match). Paths are made absolute when planning: on a cluster, the task
/// folders and the checkpoint must lie where every worker sees them at the same path.
/// </summary>
public static class SweepSpecJson
{
    // Get-only properties (BackboneSpec.ModelJson, TrainOptions.Schedule) are derived, not stored.
    static readonly JsonSerializerOptions Options = new() { IgnoreReadOnlyProperties = true };

    public static string Write(TuneSpec spec) => JsonSerializer.Serialize(spec, Options);

    public static TuneSpec Read(string json) =>
        JsonSerializer.Deserialize<TuneSpec>(json, Options) ?? throw new InvalidDataException("a sweep's stored spec is null");

    /// <summary>The spec with the task folder and checkpoint as absolute paths.</summary>
    public static TuneSpec Anchored(TuneSpec spec) => spec with
    {
        TaskDirectory = Path.GetFullPath(spec.TaskDirectory),
        Backbone = spec.Backbone with { Checkpoint = spec.Backbone.Checkpoint is { } c ? Path.GetFullPath(c) : null },
    };
}
