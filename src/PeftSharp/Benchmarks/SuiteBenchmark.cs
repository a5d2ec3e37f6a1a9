using System.Diagnostics;
using System.Globalization;
using PeftSharp.Results;
using PeftSharp.Suite;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;

namespace PeftSharp.Benchmarks;

/// <summary>How much of the benchmark to run. The study's protocol is kept in every profile; what shrinks is the
/// number of epochs, the lr × wd grid and the method grids (the 2-core budget, stated in the README). The short
/// profiles skip the warm-up: timm's per-epoch warm-up would spend a whole epoch of two or three at lr 1e-6.</summary>
public sealed record BenchProfile
{
    public required string Name { get; init; }
    public required IReadOnlyList<string> Tasks { get; init; }
    public required IReadOnlyList<string> Methods { get; init; }
    public required int Epochs { get; init; }
    public required int WarmupEpochs { get; init; }
    public required IReadOnlyList<double> Lrs { get; init; }
    public required IReadOnlyList<double> WeightDecays { get; init; }
    /// <summary>Per-method lr grids that replace <see cref="Lrs"/> for those methods.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<double>> MethodLrs { get; init; } = new Dictionary<string, IReadOnlyList<double>>();
    public IReadOnlyList<double> LrsFor(string method) => MethodLrs.TryGetValue(method, out var lrs) ? lrs : Lrs;

    /// <summary>Whether any method has more than one configuration, so that a val200 search runs.</summary>
    public bool SearchesOnVal200 => StudyGrid || Methods.Any(m => LrsFor(m).Count * WeightDecays.Count > 1);

    /// <summary>The grid and protocol in words, for the report.</summary>
    public string GridDescription()
    {
        static string Set(IEnumerable<double> values) => "{" + string.Join(", ", values.Select(x => x.ToString("G", CultureInfo.InvariantCulture))) + "}";
        string overrides = string.Concat(MethodLrs.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => $" ({m.Key}: {Set(m.Value)})"));
        return $"lr ∈ {Set(Lrs)}{overrides} × wd ∈ {Set(WeightDecays)}{(StudyGrid ? " × the study's method grids" : ", method defaults")}; " +
               (SearchesOnVal200 ? "val200 selection, retrain on train800val200" : "one configuration per method, so no val200 search: trained on train800val200") +
               ", test top-1 (%)";
    }
    /// <summary>Search each method's study grid (full profile) or its defaults only.</summary>
    public bool StudyGrid { get; init; }
    public int BatchSize { get; init; } = 64;

    public static IReadOnlyList<string> AllMethods => TunerRegistry.All.Select(m => m.Id).ToList();

    public static BenchProfile Quick => new()
    {
        Name = "quick", Tasks = new[] { "digits", "fashion-xray", "dsprites-loc" },
        Methods = new[] { "linear", "lora", "ssf", "vpt-shallow" }, Epochs = 2, WarmupEpochs = 0,
        Lrs = new[] { 1e-2 }, WeightDecays = new[] { 1e-4 },
    };

    /// <summary>Every method on every task within an hour on 2 cores: the lr grid is cut to one point per method
    /// (so no val200 search runs), since even lr ∈ {3e-3, 1e-2} at 2 epochs would take about 85 minutes here;
    /// the epochs saved go to training (3 instead of 2). Full fine-tuning gets the lower lr it needs.</summary>
    public static BenchProfile Default => new()
    {
        Name = "default", Tasks = MiniVtab.Tasks.Select(t => t.Name).ToList(), Methods = AllMethods, Epochs = 3, WarmupEpochs = 0,
        Lrs = new[] { 5e-3 }, WeightDecays = new[] { 1e-4 },
        MethodLrs = new Dictionary<string, IReadOnlyList<double>> { ["full"] = new[] { 1e-3 } },
    };

    public static BenchProfile Full => new()
    {
        Name = "full", Tasks = MiniVtab.Tasks.Select(t => t.Name).ToList(), Methods = AllMethods, Epochs = 100, WarmupEpochs = 10,
        Lrs = new[] { 1e-3, 1e-2 }, WeightDecays = new[] { 1e-4, 1e-3 }, StudyGrid = true,
    };

    public static BenchProfile Get(string name) => name switch
    {
        "quick" => Quick,
        "default" => Default,
        "full" => Full,
        _ => throw new PeftSharpException($"unknown bench profile '{name}' (quick, default, full)"),
    };
}

/// <summary>One (task, method) cell of the benchmark.</summary>
public sealed record BenchCell(string Task, TaskGroup Group, string Method, string Backbone, double? TestTop1, double? ValTop1,
                               long TrainableParams, double TrainSeconds, RunRecord? Best, string? Error);

public sealed record BenchOutcome(BenchProfile Profile, IReadOnlyList<BenchCell> Cells, double Seconds, string Checkpoint, string Device);

/// <summary>
/// The offline benchmark: materialises the mini-VTAB suite, tunes every method on every task with the study's
/// protocol (val200 selection, retrain on train800val200, test), plus a linear probe on a random-init backbone of the
/// same shape as evidence that the default backbone is pretrained. Everything lands in the results database, so an
/// interrupted benchmark resumes where it stopped.
/// </summary>
public sealed class SuiteBenchmark
{
    public const string RandomBackbone = "random-init";
    public const string PretrainedBackbone = "pretrained";

    readonly BenchProfile profile;
    readonly string outDir;
    readonly string checkpoint;

    public SuiteBenchmark(BenchProfile profile, string outDir, string checkpoint)
    {
        this.profile = profile;
        this.outDir = outDir;
        this.checkpoint = checkpoint;
    }

    public BenchOutcome Run(TorchSharp.torch.Device device, IRunObserver? observer, IProgress<string>? log)
    {
        var watch = Stopwatch.StartNew();
        if (!File.Exists(checkpoint)) throw new PeftSharpException($"{checkpoint}: default backbone not found (run 'peftsharp pretrain' or pass --checkpoint)");
        Directory.CreateDirectory(outDir);
        log?.Report($"materialising the mini-VTAB suite in {Path.Combine(outDir, "suite")}");
        var tasks = MiniVtab.Materialize(Path.Combine(outDir, "suite"), taskNames: profile.Tasks);
        using var db = ResultsDb.Open(Path.Combine(outDir, "results.db"));
        var protocol = new StudyProtocol(new RunExecutor(db, device, observer, Path.Combine(outDir, "checkpoints")));
        var pretrained = new BackboneSpec(null, null, checkpoint);
        var shape = Checkpoints.ModelCheckpoints.ReadVitConfig(checkpoint);
        var random = new BackboneSpec(null, shape.ToJson(), null);
        // Inputs are normalised as the backbone was pretrained (its metadata says how), for both backbones alike.
        string normalization = Checkpoints.ModelCheckpoints.ReadNormalization(checkpoint) ?? "none";
        var train = new TrainOptions
        {
            Epochs = profile.Epochs, WarmupEpochs = profile.WarmupEpochs, BatchSize = profile.BatchSize, DropPath = 0.1,
            Normalization = Data.Normalization.FromName(normalization).Name,
        };
        var cells = new List<BenchCell>();
        foreach (var task in tasks)
        {
            foreach (var method in profile.Methods)
                cells.Add(Cell(protocol, task, method, pretrained, PretrainedBackbone, train));
            cells.Add(Cell(protocol, task, "linear", random, RandomBackbone, train));
        }
        return new BenchOutcome(profile, cells, watch.Elapsed.TotalSeconds, Path.GetFileName(checkpoint), device.ToString());
    }

    BenchCell Cell(StudyProtocol protocol, MaterializedTask task, string method, BackboneSpec backbone, string backboneName, TrainOptions train)
    {
        var spec = new TuneSpec
        {
            TaskDirectory = task.Directory, Backbone = backbone, Method = method, Train = train,
            MethodGrid = profile.StudyGrid ? TuneSpec.StudyGrid(method, new Dictionary<string, string>()) : new Dictionary<string, string[]>(),
            Lrs = profile.LrsFor(method), WeightDecays = profile.WeightDecays,
        };
        var result = protocol.Tune(spec);
        var final = result.Final.FirstOrDefault(r => r.Status == RunStatus.Finished);
        double seconds = result.Search.Concat(result.Final).Sum(r => r.Outcome?.TrainSeconds ?? 0);
        string? error = final == null ? (result.Final.FirstOrDefault()?.Error ?? result.Search.FirstOrDefault(r => r.Error != null)?.Error ?? "no run finished") : null;
        return new BenchCell(task.Name, task.Group, method, backboneName, result.Mean, result.Best?.Top1 * 100,
                             final?.Outcome?.TrainableParams ?? result.Best?.Outcome?.TrainableParams ?? 0, seconds, result.Best, error);
    }
}
