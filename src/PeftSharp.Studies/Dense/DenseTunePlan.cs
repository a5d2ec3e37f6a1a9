using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PeftSharp.Results;
using PeftSharp.Sweeps;
using PeftSharp.Training;
using PeftSharp.Tuners;

namespace PeftSharp.Dense;

/// <summary>
/// A dense tune request's runs (<see cref="TuneSpec.Dense"/>), as the sweep queue plans and its workers execute them:
/// every lr × wd × method-grid point trains on train and is scored on val; the best is retrained on train+val and
/// scored on test (the dense benchmark's protocol; <see cref="TuneSpec.TrainImages"/>/<see cref="TuneSpec.ValImages"/>
/// take the first images of train and val). Each run is a <see cref="DenseRunRequest"/>, so its key is the key the
/// same run has anywhere else.
/// </summary>
public sealed class DenseTunePlan : ISweepPlan
{
    readonly DenseSweep dense;

    DenseTunePlan(TuneSpec spec, DenseTask task)
    {
        Spec = spec;
        Task = task;
        dense = spec.Dense ?? throw new ArgumentException("not a dense tune request", nameof(spec));
        Points = spec.Points();
        foreach (var (_, _, settings) in Points) TunerRegistry.ResolveHypers(spec.Method, settings);   // fail fast on a bad grid
        if (spec.SplitRule != null) throw new PeftSharpException("split_rule", $"{task.Directory}: a dense task has its splits as folders; a split rule does not apply");
        SweepId = Id(spec, task);
    }

    public static DenseTunePlan Create(TuneSpec spec) => new(spec, DenseTask.Open(spec.TaskDirectory));

    public TuneSpec Spec { get; }
    public DenseTask Task { get; }
    public IReadOnlyList<(double Lr, double Wd, Dictionary<string, string> Settings)> Points { get; }
    public string SweepId { get; }
    public int PointCount => Points.Count;
    public bool SkipsSearch => Points.Count == 1 && Spec.Seeds.Count > 0;
    public int SearchSeed => Spec.Seeds[0];

    public DenseRunRequest Request(RunStage stage, int point, int seed)
    {
        var (lr, wd, settings) = Points[point];
        var train = Spec.Train with { Lr = lr, WeightDecay = wd, Seed = seed };
        bool search = stage == RunStage.Search;
        return DenseRunRequest.Create(Task, Spec.Method, settings, train, Spec.Backbone, search ? "train" : "train+val", search ? "val" : "test",
                                             dense.ImageSize, dense.SegHead, SweepId, trainImages: Spec.TrainImages,
                                             evalImages: search ? Spec.ValImages : dense.TestImages, valImages: search ? null : Spec.ValImages, headLr: dense.HeadLr,
                                      stage: stage);
    }

    public RunSpec RunSpec(RunStage stage, int point, int seed) => Request(stage, point, seed).Spec;

    public IRunJob Job(RunStage stage, int point, int seed) => Request(stage, point, seed);

    public string Label(RunStage stage, int point, int seed) => stage == RunStage.Search
        ? $"{Task.Name} {Spec.Method} search {point + 1}/{Points.Count}"
        : $"{Task.Name} {Spec.Method} final (seed {seed})";

    /// <summary>Dense runs read their splits when they run; the plan holds nothing to free.</summary>
    public void Dispose() { }

    /// <summary>A deterministic id for the sweep, so planning the same request again finds it.</summary>
    static string Id(TuneSpec spec, DenseTask task)
    {
        var o = new JsonObject
        {
            ["task"] = task.Name, ["family"] = task.Family, ["method"] = spec.Method,
            ["settings"] = new JsonObject(spec.Settings.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["grid"] = new JsonObject(spec.MethodGrid.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonArray(kv.Value.Select(v => (JsonNode)v).ToArray())))),
            ["lrs"] = new JsonArray(spec.Lrs.Select(v => (JsonNode)v).ToArray()),
            ["wds"] = new JsonArray(spec.WeightDecays.Select(v => (JsonNode)v).ToArray()),
            ["model"] = spec.Backbone.ModelJson, ["training"] = RunSpecs.TrainingJson(spec.Train), ["seed"] = spec.Seeds[0],
            ["image_size"] = spec.Dense!.ImageSize, ["head"] = spec.Dense.SegHead, ["head_lr"] = spec.Dense.HeadLr, ["test_images"] = spec.Dense.TestImages,
            ["train_images"] = spec.TrainImages, ["val_images"] = spec.ValImages,
        };
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(o.ToJsonString()));
        return $"{task.Name}/{spec.Method}/{Convert.ToHexStringLower(hash)[..12]}";
    }
}
