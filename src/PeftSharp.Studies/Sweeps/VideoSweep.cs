using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Video;

namespace PeftSharp.Sweeps;

/// <summary>
/// A video sweep as the queue stores it: one video task, one method, the learning rates and seeds, the training
/// options, the base and the clip protocol. Every lr × seed is one <see cref="VideoRunJob"/> (stage "single": each run
/// trains on train, records its val top-1 for choosing the lr, and is scored on test; the queue lists them as final
/// runs, with no selection step after them), so its runs are the runs
/// `bench --family video` and `train --family video` make with the same settings (the same keys: one is reused for
/// the other). Paths are absolute: workers must see the task folder and checkpoint at the same path.
/// </summary>
public sealed record VideoSweepSpec
{
    /// <summary>Marks the stored JSON as a video sweep (the queue's other sweeps are classification tune requests).</summary>
    public string Family { get; init; } = VideoRunJob.Family;
    public string TaskDirectory { get; init; } = "";
    public string Method { get; init; } = "";
    public Dictionary<string, string> Settings { get; init; } = new();
    public double[] Lrs { get; init; } = [1e-3];
    public int[] Seeds { get; init; } = [42];
    public TrainOptions Train { get; init; } = new();
    public string Checkpoint { get; init; } = "";
    public bool Inflate { get; init; } = true;
    public int Frames { get; init; } = 4;
    public int Tubelet { get; init; } = 2;
    public string Sampling { get; init; } = "segment";
    public int Interval { get; init; } = 4;
    public int Size { get; init; } = 32;
    public int ShortSide { get; init; }
    public int TestClips { get; init; } = 1;
    public int TestCrops { get; init; } = 1;
    public bool Flip { get; init; }

    static readonly JsonSerializerOptions Options = new() { IgnoreReadOnlyProperties = true };

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    public static VideoSweepSpec FromJson(string json) =>
        JsonSerializer.Deserialize<VideoSweepSpec>(json, Options) ?? throw new InvalidDataException("a video sweep's stored spec is null");

    /// <summary>Whether a stored sweep spec is a video sweep's.</summary>
    public static bool IsVideo(string json) =>
        JsonDocument.Parse(json).RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty(nameof(Family), out var f)
        && f.ValueKind == JsonValueKind.String && f.GetString() == VideoRunJob.Family;

    public VideoSweepSpec Anchored() => this with { TaskDirectory = Path.GetFullPath(TaskDirectory), Checkpoint = Path.GetFullPath(Checkpoint) };

    public VideoBackbone Backbone => new(Checkpoint, Inflate, Frames, Tubelet) { ImgSize = Size };

    public VideoDataOptions Data => new(new ClipSampler(ClipSampler.ParseMode(Sampling), Frames, Interval),
                                        new ClipTransform { Size = Size, ShortSide = ShortSide, TestClips = TestClips, TestCrops = TestCrops, Flip = Flip });
}

/// <summary>The runs of a video sweep: point = index into the learning rates, one run per seed.</summary>
public sealed class VideoSweepPlan
{
    VideoSweepPlan(VideoSweepSpec spec)
    {
        if (spec.Lrs.Length == 0 || spec.Seeds.Length == 0) throw new PeftSharpException("lrs", "a video sweep needs at least one learning rate and one seed");
        Spec = spec;
        Task = VideoTask.Open(spec.TaskDirectory);
        Tuners.TunerRegistry.Parse(spec.Method);
        SweepId = "video-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(spec.ToJson())))[..16];
    }

    public static VideoSweepPlan Create(VideoSweepSpec spec) => new(spec.Anchored());

    public VideoSweepSpec Spec { get; }
    public VideoTask Task { get; }
    public string SweepId { get; }

    public IEnumerable<(int Point, int Seed)> Runs =>
        from point in Enumerable.Range(0, Spec.Lrs.Length) from seed in Spec.Seeds select (point, seed);

    public VideoRunJob Job(int point, int seed) =>
        new(Task, Spec.Method, Spec.Settings, Spec.Train with { Lr = Spec.Lrs[point], Seed = seed }, Spec.Backbone, Spec.Data);

    public string Label(int point, int seed) => $"{Task.Name} {Spec.Method} lr={Spec.Lrs[point]:G3} seed {seed}";
}

public sealed partial class WorkQueue
{
    readonly Dictionary<string, VideoSweepPlan> videoPlans = new();

    /// <summary>Queues every run of each video sweep (lr × seed) as a final run (each is scored on test; nothing is
    /// selected after them); planning the same sweeps again queues nothing new.</summary>
    public PlanResult Plan(string? planName, IEnumerable<VideoSweepSpec> sweeps)
    {
        var plans = sweeps.Select(VideoSweepPlan.Create).ToList();
        planName ??= "plan-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join("\n", plans.Select(p => p.Spec.ToJson())))))[..12];
        var sweepIds = new List<string>();
        int queued = 0, already = 0;
        foreach (var plan in plans)
        {
            videoPlans[plan.SweepId] = plan;
            var runs = plan.Runs.ToList();
            int added = store.Write(tx =>
            {
                store.Execute(QueueSql.InsertSweep, tx, ("@sweep_id", plan.SweepId), ("@plan", planName),
                              ("@spec_json", plan.Spec.ToJson()), ("@created_utc", SqlResultsStore.Now()));
                return runs.Sum(r => Enqueue(tx, plan, planName, r.Point, r.Seed));
            });
            sweepIds.Add(plan.SweepId);
            queued += added;
            already += runs.Count - added;
        }
        return new PlanResult(planName, sweepIds, queued, already);
    }

    int Enqueue(DbTransaction tx, VideoSweepPlan plan, string planName, int point, int seed) =>
        store.Execute(QueueSql.Enqueue, tx, ("@run_key", plan.Job(point, seed).Spec.Key), ("@sweep_id", plan.SweepId),
                      ("@plan", planName), ("@stage", RunNames.Of(RunStage.Final)), ("@point", (long)point), ("@seed", (long)seed));

    /// <summary>The sweep's video plan, rebuilt from its stored spec; null when the sweep is a classification tune request.</summary>
    public VideoSweepPlan? VideoPlanOf(string sweepId)
    {
        if (videoPlans.TryGetValue(sweepId, out var plan)) return plan;
        string json = SpecJson(sweepId);
        return VideoSweepSpec.IsVideo(json) ? videoPlans[sweepId] = VideoSweepPlan.Create(VideoSweepSpec.FromJson(json)) : null;
    }

    string SpecJson(string sweepId) =>
        store.Query(QueueSql.SweepSpec, r => r.GetString(0), ("@sweep_id", sweepId)).SingleOrDefault()
        ?? throw new PeftSharpException($"{store.Location}: no sweep '{sweepId}' in the queue");
}

public sealed partial class SweepWorker
{
    /// <summary>Runs one claimed run of a video sweep through the executor; null when the item is not a video sweep's.</summary>
    RunRecord? WorkVideo(QueueItem item, out string? keyError)
    {
        keyError = null;
        if (queue.VideoPlanOf(item.SweepId) is not { } plan) return null;
        var job = plan.Job(item.Point, item.Seed);
        if (job.Spec.Key != item.RunKey)
        {
            keyError = $"the run rebuilt from sweep {item.SweepId} has key {job.Spec.Key[..12]}, the queue expected {item.RunKey[..12]} " +
                       "(the task's lists, the checkpoint or PeftSharp changed since the plan); plan it again";
            return null;
        }
        return executor.Execute(job, plan.Label(item.Point, item.Seed));
    }
}
