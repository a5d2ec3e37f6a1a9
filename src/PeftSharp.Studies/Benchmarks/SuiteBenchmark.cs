using PeftSharp.Evaluation;
using System.Diagnostics;
using System.Globalization;
using PeftSharp.Results;
using PeftSharp.Suite;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;

namespace PeftSharp.Benchmarks;

/// <summary>How much of the benchmark to run. Every profile keeps the study's protocol (search on train800, select on
/// val200 at the last epoch, retrain the chosen configuration on train800val200, report test); what shrinks to fit a
/// time budget is said in <see cref="Description"/>: the tasks, the epochs, the grids and, in the short profiles, the
/// number of training and validation images. The short profiles skip the warm-up: timm's per-epoch warm-up would
/// spend a whole epoch of two or three at lr 1e-6.</summary>
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
    /// <summary>Per-method hyperparameter grids searched with the lrs (a method's capacity knob), unless
    /// <see cref="StudyGrid"/> searches the study's whole grids.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, string[]>> MethodGrids { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, string[]>>();
    /// <summary>Search each method's study grid (full profile) instead of <see cref="MethodGrids"/>.</summary>
    public bool StudyGrid { get; init; }
    public int BatchSize { get; init; } = 64;
    /// <summary>Shrunken splits (the first N of train800 and val200), or null for VTAB-1K's 800 and 200.</summary>
    public int? TrainImages { get; init; }
    public int? ValImages { get; init; }
    /// <summary>The chosen configuration is retrained once per seed (42, 43, …); the search uses the first.</summary>
    public int Seeds { get; init; } = 1;
    /// <summary>Search by successive halving instead of training every grid point fully (null: the whole grid).</summary>
    public HalvingSearch? Halving { get; init; }
    /// <summary>Precision of every run's matrix products (part of each run's key when not float32).</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    public IReadOnlyList<double> LrsFor(string method) => MethodLrs.TryGetValue(method, out var lrs) ? lrs : Lrs;

    public IReadOnlyDictionary<string, string[]> GridFor(string method) =>
        StudyGrid ? TuneSpec.StudyGrid(method, new Dictionary<string, string>())
        : MethodGrids.TryGetValue(method, out var grid) ? grid : new Dictionary<string, string[]>();

    public IReadOnlyList<int> SeedList => Enumerable.Range(42, Seeds).ToList();

    /// <summary>Configurations searched for <paramref name="method"/>: lr × wd × its grid.</summary>
    public int SearchPoints(string method) => LrsFor(method).Count * WeightDecays.Count * GridFor(method).Values.Aggregate(1, (n, v) => n * v.Length);

    /// <summary>Whether any method has more than one configuration, so that a val200 search runs.</summary>
    public bool SearchesOnVal200 => Methods.Any(m => SearchPoints(m) > 1);

    static string Set(IEnumerable<double> values) => "{" + string.Join(", ", values.Select(x => x.ToString("G", CultureInfo.InvariantCulture))) + "}";

    /// <summary>The grid searched, in words: lr × wd, the per-method overrides and knobs.</summary>
    public string GridDescription()
    {
        string overrides = string.Concat(MethodLrs.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => $" ({m.Key}: {Set(m.Value)})"));
        string knobs = StudyGrid ? " × the study's method grids"
            : MethodGrids.Count == 0 ? ", method defaults"
            : " × " + string.Join(", ", MethodGrids.Where(g => Methods.Contains(g.Key)).OrderBy(g => g.Key, StringComparer.Ordinal)
                  .Select(g => $"{g.Key} {string.Join(" × ", g.Value.Select(kv => $"{kv.Key} {{{string.Join(", ", kv.Value)}}}"))}"));
        return $"lr ∈ {Set(Lrs)}{overrides} × wd ∈ {Set(WeightDecays)}{knobs}";
    }

    /// <summary>The protocol as run, in words, for the report header.</summary>
    public string Description()
    {
        string data = TrainImages is int n && ValImages is int m
            ? $"search on the first {n} of train800, select on the first {m} of val200, retrain the chosen configuration on those {n + m}, test on all 1000"
            : "search on train800, select on val200, retrain the chosen configuration on train800val200, test on all 1000";
        string search = SearchesOnVal200 ? GridDescription() + (Halving is { } h ? $", searched by {h}" : "") : "one configuration per method, so nothing to select: trained on the final split directly";
        return $"{data}; grid {search}; {Epochs} epochs ({WarmupEpochs} warm-up), batch {BatchSize}; {Seeds} seed{(Seeds == 1 ? "" : "s")} ({string.Join(", ", SeedList)}); {Interop.Autocast.Name(Precision)}";
    }

    /// <summary>The training settings of every run of the profile, inputs normalised as the backbone was pretrained.</summary>
    public TrainOptions Training(string normalization) => new()
    {
        Epochs = Epochs, WarmupEpochs = WarmupEpochs, BatchSize = BatchSize, DropPath = 0.1,
        EvalBatchSize = 256,   // the suite's 32-px backbone evaluates fastest in large batches
        Normalization = Data.Normalization.FromName(normalization).Name, Precision = Precision,
    };

    /// <summary>The tune request of one (task, method) cell: the method's lrs and grid, the profile's seeds and splits.</summary>
    public TuneSpec CellSpec(string taskDirectory, string method, BackboneSpec backbone, TrainOptions train) => new()
    {
        TaskDirectory = taskDirectory, Backbone = backbone, Method = method, Train = train,
        MethodGrid = GridFor(method), Lrs = LrsFor(method), WeightDecays = WeightDecays,
        Seeds = SeedList, TrainImages = TrainImages, ValImages = ValImages, Halving = Halving,
    };

    public static IReadOnlyList<string> AllMethods => TunerRegistry.ImageMethods.Select(m => m.Id).ToList();

    /// <summary>Two values of each method's capacity knob, from the study's grid (ConvPass: its output scale, the knob
    /// that decides whether it trains at all at these learning rates; measured in the README).</summary>
    /// <summary>Each method's grid in the short profiles, as the methods declare it (<see cref="TunerMethod.BenchGrid"/>).</summary>
    public static IReadOnlyDictionary<string, IReadOnlyDictionary<string, string[]>> CapacityKnobs =>
        TunerRegistry.All.Where(m => m.BenchGrid.Count > 0).ToDictionary(m => m.Id, m => m.BenchGrid);

    /// <summary>A smoke test of the whole pipeline (search, selection, report) in about two minutes.</summary>
    public static BenchProfile Quick => new()
    {
        Name = "quick", Tasks = new[] { "digits", "fashion-xray", "dsprites-loc" },
        Methods = new[] { "linear", "lora", "ssf", "vpt-shallow" }, Epochs = 2, WarmupEpochs = 0, BatchSize = 32,
        Lrs = new[] { 3e-3, 1e-2 }, WeightDecays = new[] { 1e-4 }, TrainImages = 160, ValImages = 40,
        MethodGrids = new Dictionary<string, IReadOnlyDictionary<string, string[]>> { ["lora"] = CapacityKnobs["lora"] },
    };

    /// <summary>The study's sixteen methods, each tuned (two lrs × two values of its capacity knob) on six tasks, two per
    /// group, within 15 minutes on 2 cores. What was cut to fit: the tasks (6 of 10), the methods PeftSharp adds (prefix,
    /// DoRA, partial-k, DTL, Adapter+, Hydra, Mona: run them with --methods), the epochs (2) and the training images (the first 160 of train800, 40
    /// of val200). Full fine-tuning gets lower lrs, as it needs.</summary>
    public static BenchProfile Default => new()
    {
        Name = "default", Tasks = new[] { "digits", "photo-patches", "fashion-xray", "digits-microscopy", "clevr-dist", "dsprites-loc" },
        Methods = TunerRegistry.StudyMethods, Epochs = 2, WarmupEpochs = 0, BatchSize = 32,
        Lrs = new[] { 3e-3, 1e-2 }, WeightDecays = new[] { 1e-4 }, TrainImages = 160, ValImages = 40,
        MethodLrs = new Dictionary<string, IReadOnlyList<double>> { ["full"] = new[] { 3e-4, 1e-3 } },
        MethodGrids = CapacityKnobs,
    };

    /// <summary>The study's protocol: all tasks and methods, 100 epochs, lr × wd × the method grids, whole splits.</summary>
    public static BenchProfile Full => new()
    {
        Name = "full", Tasks = MiniVtab.Tasks.Select(t => t.Name).ToList(), Methods = AllMethods, Epochs = 100, WarmupEpochs = 10,
        Lrs = new[] { 1e-3, 1e-2 }, WeightDecays = new[] { 1e-4, 1e-3 }, StudyGrid = true,
    };

    /// <summary>Between the default and the study: the study's sixteen methods on all ten tasks with the whole
    /// train800/val200, the study's lrs × each method's capacity knob (one weight decay: the study's second one
    /// doubles the grid), 20 epochs with 2 of warm-up at the study's batch 64, the chosen configuration retrained with
    /// two seeds. Full fine-tuning keeps the lower lrs it needs. The grid is searched by successive halving: on the
    /// three tasks whose whole grid was also trained at this length it chose the grid's configuration, or one within
    /// 0.5 test points, in most cells for under a quarter of the search's images (docs/bench.md). Rerun the same
    /// command to resume: finished runs are reused.</summary>
    public static BenchProfile Standard => new()
    {
        Name = "standard", Tasks = MiniVtab.Tasks.Select(t => t.Name).ToList(), Methods = TunerRegistry.StudyMethods,
        Epochs = 20, WarmupEpochs = 2, BatchSize = 64, Lrs = new[] { 1e-3, 1e-2 }, WeightDecays = new[] { 1e-4 },
        MethodLrs = new Dictionary<string, IReadOnlyList<double>> { ["full"] = new[] { 3e-4, 1e-3 } },
        MethodGrids = CapacityKnobs, Seeds = 2, Halving = new HalvingSearch(),
    };

    public static IReadOnlyList<string> Names => new[] { "quick", "default", "standard", "full" };

    public static BenchProfile Get(string name) => name switch
    {
        "quick" => Quick,
        "default" => Default,
        "standard" => Standard,
        "full" => Full,
        _ => throw new PeftSharpException($"unknown bench profile '{name}'; expected one of {string.Join(", ", Names)}"),
    };

    /// <summary>Checks the profile's values, naming the field that is wrong.</summary>
    public BenchProfile Validate()
    {
        if (Seeds < 1) throw new PeftSharpException("seeds", $"bench profile: seeds must be at least 1, got {Seeds}");
        if (Epochs < 1) throw new PeftSharpException("epochs", $"bench profile: epochs must be at least 1, got {Epochs}");
        if (Tasks.Count == 0 || Methods.Count == 0) throw new PeftSharpException("bench: expected at least one task and one method");
        foreach (var m in Methods) TunerRegistry.Parse(m);
        foreach (var t in Tasks) MiniVtab.Task(t);
        return this;
    }
}

/// <summary>One (task, method) cell of the benchmark. <see cref="TestTop1"/> is the mean over seeds; <see cref="TestCorrect"/>
/// says, per seed and test example (in example order), whether the final model got it right (for the paired bootstrap).</summary>
public sealed record BenchCell(string Task, TaskGroup Group, string Method, string Backbone, double? TestTop1, double? ValTop1,
                               long TrainableParams, double TrainSeconds, RunRecord? Best, string? Error)
{
    public IReadOnlyList<RunRecord> Finals { get; init; } = Array.Empty<RunRecord>();
    public IReadOnlyList<bool[]> TestCorrect { get; init; } = Array.Empty<bool[]>();
    public int SearchRuns { get; init; }
    /// <summary>Training images (epochs × images) of all the cell's search runs: its search's compute.</summary>
    public long SearchImages { get; init; }
    /// <summary>The configuration the final runs trained (the val200 choice, or the only one), in words.</summary>
    public string Configuration { get; init; } = "";
}

/// <summary>What the benchmark ran on, for the report.</summary>
public sealed record MachineInfo(string Cpu, int Cores, string Os, string Runtime, string TorchSharp)
{
    public static MachineInfo Current()
    {
        string cpu = "unknown CPU";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        string torch = typeof(torch).Assembly.GetName().Version?.ToString() ?? "?";
        return new MachineInfo(cpu, Environment.ProcessorCount, System.Runtime.InteropServices.RuntimeInformation.OSDescription,
                               System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription, torch);
    }

    public override string ToString() => $"{Cpu}, {Cores} cores, {Os}, {Runtime}, TorchSharp {TorchSharp}";
}

public sealed record BenchOutcome(BenchProfile Profile, IReadOnlyList<BenchCell> Cells, double Seconds, string Checkpoint, string Device)
{
    public MachineInfo Machine { get; init; } = MachineInfo.Current();
}

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
        var cells = Plan(log);
        using var db = ResultsDb.Open(Path.Combine(outDir, "results.db"));
        var protocol = new StudyProtocol(new RunExecutor(db, device, observer, Path.Combine(outDir, "checkpoints")));
        var results = cells.Select(c => Cell(db, protocol, c.Task, c.Spec, c.BackboneName)).ToList();
        return new BenchOutcome(profile, results, watch.Elapsed.TotalSeconds, Path.GetFileName(checkpoint), device.ToString());
    }

    /// <summary>Queues every cell's runs in OUT/results.db for <c>peftsharp worker</c> processes (the sweep queue), as
    /// plan "bench-PROFILE"; <see cref="Run"/> afterwards finds them finished and writes the report.</summary>
    public Sweeps.PlanResult Queue(IProgress<string>? log)
    {
        // Checked before the suite is materialised: the queue would refuse every cell.
        if (profile.Halving is { } halving)
            throw new PeftSharpException("search", $"the {profile.Name} profile searches by {halving}, and the sweep queue trains whole grids: " +
                                                   "queue its grid search instead, or run it in one process");
        var cells = Plan(log);
        using var db = ResultsDb.Open(Path.Combine(outDir, "results.db"));
        return new Sweeps.WorkQueue(db).Plan($"bench-{profile.Name}", cells.Select(c => c.Spec));
    }

    /// <summary>Materialises the suite and lists every cell's tune request: each method on the pretrained backbone, and
    /// a linear probe on a random-init backbone of the same shape (evidence that the default backbone is pretrained).</summary>
    List<(MaterializedTask Task, string BackboneName, TuneSpec Spec)> Plan(IProgress<string>? log)
    {
        if (!File.Exists(checkpoint)) throw new PeftSharpException("checkpoint", $"{checkpoint}: backbone checkpoint not found (pretrain one, or name another checkpoint)");
        var shape = Checkpoints.ModelCheckpoints.ReadVitConfig(checkpoint);   // a damaged file fails here, before any work
        WritableFolder.Require(outDir, "the benchmark's output folder");
        log?.Report($"materialising the mini-VTAB suite in {Path.Combine(outDir, "suite")}");
        var tasks = MiniVtab.Materialize(Path.Combine(outDir, "suite"), taskNames: profile.Tasks);
        var pretrained = new BackboneSpec(null, null, checkpoint);
        var random = new BackboneSpec(null, shape.ToJson(), null);
        // Inputs are normalised as the backbone was pretrained (its metadata says how), for both backbones alike.
        var train = profile.Training(Checkpoints.ModelCheckpoints.ReadNormalization(checkpoint) ?? "none");
        var cells = new List<(MaterializedTask, string, TuneSpec)>();
        foreach (var task in tasks)
        {
            foreach (var method in profile.Methods)
                cells.Add((task, PretrainedBackbone, profile.CellSpec(task.Directory, method, pretrained, train)));
            cells.Add((task, RandomBackbone, profile.CellSpec(task.Directory, "linear", random, train)));
        }
        return cells;
    }

    BenchCell Cell(ResultsDb db, StudyProtocol protocol, MaterializedTask task, TuneSpec spec, string backboneName)
    {
        string method = spec.Method;
        var result = protocol.Tune(spec);
        var finals = result.Final.Where(r => r.Status == RunStatus.Finished).ToList();
        double seconds = result.Search.Concat(result.Final).Sum(r => r.Outcome?.TrainSeconds ?? 0);
        string? error = finals.Count < spec.Seeds.Count
            ? (result.Final.FirstOrDefault(r => r.Error != null)?.Error ?? result.Search.FirstOrDefault(r => r.Error != null)?.Error ?? "no run finished")
            : null;
        var chosen = finals.FirstOrDefault() ?? result.Best;
        return new BenchCell(task.Name, task.Group, method, backboneName, error == null ? result.Mean : null, result.Best?.Top1 * 100,
                             chosen?.Outcome?.TrainableParams ?? 0, seconds, result.Best, error)
        {
            Finals = finals, SearchRuns = result.Search.Count, SearchImages = result.SearchImages,
            TestCorrect = error == null ? finals.Select(r => Correct(db.Predictions(r.Id))).ToList() : Array.Empty<bool[]>(),
            Configuration = chosen == null ? "" : Describe(chosen.Spec),
        };
    }

    /// <summary>Per test example, in example order, whether the prediction was right.</summary>
    static bool[] Correct(IReadOnlyList<Prediction> predictions) =>
        predictions.OrderBy(p => p.Index).Select(p => p.Predicted == p.Label).ToArray();

    /// <summary>"lr 0.01, wd 0.0001, rank 8": the run's lr, wd and the hyperparameters its grid varied.</summary>
    string Describe(RunSpec spec)
    {
        var hypers = System.Text.Json.Nodes.JsonNode.Parse(spec.HyperJson)?.AsObject();
        // Hyperparameters are stored per method ({"lora": {"rank": 8}}); a composition's grid names them "lora.rank".
        string? Value(string key) => key.Split('.', 2) is [var m, var h] ? hypers?[m]?[h]?.ToString() : hypers?[spec.Method]?[key]?.ToString();
        var varied = profile.GridFor(spec.Method).Keys.Select(k => $"{k} {Value(k) ?? "?"}");
        return string.Join(", ", new[] { $"lr {spec.Lr.ToString("G", CultureInfo.InvariantCulture)}", $"wd {spec.WeightDecay.ToString("G", CultureInfo.InvariantCulture)}" }.Concat(varied));
    }
}
