using System.Diagnostics;
using System.Globalization;
using PeftSharp.Results;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Dense;

/// <summary>How much of the dense benchmark to run: tasks, V-PETL's dense methods, epochs, the lr grid searched on
/// val (the best lr is retrained on train + val and scored on test).</summary>
public sealed record DenseBenchProfile
{
    public required string Name { get; init; }
    public required IReadOnlyList<string> Tasks { get; init; }
    public required IReadOnlyList<string> Methods { get; init; }
    public required int Epochs { get; init; }
    public required IReadOnlyList<double> Lrs { get; init; }
    public IReadOnlyDictionary<string, IReadOnlyList<double>> MethodLrs { get; init; } = new Dictionary<string, IReadOnlyList<double>>();
    public int BatchSize { get; init; } = 32;
    public int WarmupEpochs { get; init; }
    /// <summary>The first N of train and val (null: all).</summary>
    public int? TrainImages { get; init; }
    public int? ValImages { get; init; }
    /// <summary>The first N test images scored (null: all 240).</summary>
    public int? TestImages { get; init; }
    /// <summary>The segmentation head (uper or linear; detection has FCOS).</summary>
    public string SegHead { get; init; } = "uper";
    /// <summary>The head's learning rate per task kind (absent: each run's lr): the heads' ReLU towers die at the rates
    /// the methods' few tensors want, while the linear head wants a high one.</summary>
    public IReadOnlyDictionary<DenseKind, double> HeadLrs { get; init; } = new Dictionary<DenseKind, double>();

    public IReadOnlyList<double> LrsFor(string method) => MethodLrs.TryGetValue(method, out var l) ? l : Lrs;

    /// <summary>V-PETL's dense rows that PeftSharp has: full, frozen (linear: only the head trains), BitFit, LN-tune,
    /// Partial-1, Adapter (Houlsby and Pfeiffer), LoRA, AdaptFormer.</summary>
    public static readonly IReadOnlyList<string> VpetlMethods =
        new[] { "full", "linear", "bitfit", "layernorm", "partial-k", "adapter-houlsby", "adapter-pfeiffer", "lora", "adaptformer" };

    public static DenseBenchProfile Quick => Default with { Name = "quick", Tasks = new[] { DenseSuite.Segmentation, DenseSuite.Detection }, Methods = new[] { "linear", "lora" }, Epochs = 1, TrainImages = 120, ValImages = 40, TestImages = 60 };

    /// <summary>What fits 15 minutes on 2 shared cores: the letter-tile tasks (glyphs-seg, glyphs-det: the scale and kind
    /// of object the default backbone was pretrained on; on garments and digits no method learnt the classes in the
    /// steps that fit), six of V-PETL's dense methods (full, frozen/linear, BitFit, Partial-1, LoRA, AdaptFormer), each
    /// at the lr the classification bench chose for it on this backbone (no search: a search would leave each run a
    /// third of the steps), 4 epochs at batch 8 on 360 training + 120 validation images (240 steps), scored on the first
    /// 120 test images. Segmentation uses the linear head at lr 3e-2; the FCOS head trains at 1e-3.</summary>
    public static DenseBenchProfile Default => new()
    {
        Name = "default", Tasks = new[] { DenseSuite.GlyphSegmentation, DenseSuite.GlyphDetection },
        Methods = new[] { "full", "linear", "bitfit", "partial-k", "lora", "adaptformer" },
        Epochs = 4, Lrs = new[] { 1e-2 },
        MethodLrs = new Dictionary<string, IReadOnlyList<double>> { ["full"] = new[] { 3e-4 }, ["partial-k"] = new[] { 1e-3 } },
        TrainImages = 360, ValImages = 120, TestImages = 120, BatchSize = 8, SegHead = "linear",
        HeadLrs = new Dictionary<DenseKind, double> { [DenseKind.Segmentation] = 3e-2, [DenseKind.Detection] = 1e-3 },
    };

    /// <summary>The whole splits (480 training, 120 validation, 240 test images), 10 epochs with 1 warm-up.</summary>
    public static DenseBenchProfile Full => new()
    {
        Name = "full", Tasks = new[] { DenseSuite.Segmentation, DenseSuite.Detection }, Methods = VpetlMethods,
        Epochs = 10, WarmupEpochs = 1, BatchSize = 16, Lrs = new[] { 3e-3, 1e-2 }, MethodLrs = new Dictionary<string, IReadOnlyList<double>> { ["full"] = new[] { 1e-4, 3e-4 } },
        HeadLrs = new Dictionary<DenseKind, double> { [DenseKind.Segmentation] = 1e-3, [DenseKind.Detection] = 1e-3 },
    };

    public static DenseBenchProfile Get(string name) => name switch
    {
        "quick" => Quick,
        "default" => Default,
        "full" => Full,
        _ => throw new PeftSharpException("profile", $"unknown dense bench profile '{name}'; expected quick, default or full"),
    };

    public DenseBenchProfile Validate()
    {
        if (Epochs < 1) throw new PeftSharpException("epochs", $"dense bench: epochs must be at least 1, got {Epochs}");
        foreach (var m in Methods) Tuners.TunerRegistry.Parse(m);
        foreach (var t in Tasks) DenseSuite.Task(t);
        return this;
    }

    bool Searches => Lrs.Count > 1 || MethodLrs.Values.Any(l => l.Count > 1);

    public string Description() =>
        (Searches ? "search lr ∈ " : "lr ") + $"{{{string.Join(", ", Lrs.Select(G))}}}" + string.Concat(MethodLrs.Select(m => $" ({m.Key}: {{{string.Join(", ", m.Value.Select(G))}}})")) +
        (Searches ? " on train → val, retrain the best on train+val, score test" : " (one lr per method: train on train+val, score test)") + $"; {Epochs} epochs ({WarmupEpochs} warm-up), batch {BatchSize}, AdamW wd 1e-4, drop path 0.1" +
        (TrainImages is int n ? $"; the first {n} training and {ValImages} validation images" : "") +
        (TestImages is int t ? $", the first {t} test images" : "") + $"; {SegHead} segmentation head" +
        string.Concat(HeadLrs.Select(h => $", {(h.Key == DenseKind.Segmentation ? "segmentation" : "detection")} head lr {G(h.Value)}"));

    static string G(double v) => v.ToString("G", CultureInfo.InvariantCulture);
}

/// <summary>One (task, method) cell: the test metric of the final run (at the lr chosen on val) and its run.</summary>
public sealed record DenseBenchCell(string Task, DenseKind Kind, string Method, double? Test, double? Val, double? ChosenLr, RunRecord? Final, string? Error, double Seconds);

public sealed record DenseBenchOutcome(DenseBenchProfile Profile, IReadOnlyList<DenseBenchCell> Cells, double Seconds, string Checkpoint, string SuiteDir, string DatabasePath)
{
    /// <summary>Inference speed of the plain backbone, LoRA unmerged and LoRA merged (<see cref="DenseInferenceSpeed"/>), with the head of the first task.</summary>
    public IReadOnlyList<DenseSpeed> Speeds { get; init; } = Array.Empty<DenseSpeed>();
    public string SpeedSetting { get; init; } = "";
}

/// <summary>
/// The dense benchmark: materialises the built-in dense tasks, and for every task and method searches the lrs on
/// train → val, retrains the best on train+val and scores test, each run through the results database (a finished run
/// is reused, so an interrupted benchmark resumes).
/// </summary>
public sealed class DenseBenchmark(DenseBenchProfile profile, string outDir, string checkpoint)
{
    public DenseBenchOutcome Run(Device device, IRunObserver? observer, IProgress<string>? log)
    {
        var watch = Stopwatch.StartNew();
        if (!File.Exists(checkpoint)) throw new PeftSharpException("checkpoint", $"{checkpoint}: backbone checkpoint not found");
        WritableFolder.Require(outDir, "the benchmark's output folder");
        string suiteDir = Path.Combine(outDir, "dense-suite");
        string dbPath = Path.Combine(outDir, "results.db");
        using var db = ResultsDb.Open(dbPath);
        var executor = new RunExecutor(db, device, observer, Path.Combine(outDir, "checkpoints"));
        var backbone = new BackboneSpec(null, null, checkpoint);
        string normalization = Checkpoints.ModelCheckpoints.ReadNormalization(checkpoint) ?? "none";
        var cells = new List<DenseBenchCell>();
        foreach (var name in profile.Tasks)
        {
            var info = DenseSuite.Task(name);
            log?.Report($"materialising {name} in {suiteDir}");
            var task = DenseTask.Open(DenseSuite.Materialize(suiteDir, info));
            foreach (var method in profile.Methods)
                cells.Add(Cell(executor, task, info, method, backbone, normalization));
        }
        double seconds = watch.Elapsed.TotalSeconds;
        // Merged inference costs nothing: timed after the runs (not part of the benchmark's time), head of the first task.
        var first = DenseSuite.Task(profile.Tasks[0]);
        log?.Report("timing inference: plain backbone, LoRA unmerged, LoRA merged");
        var speeds = DenseInferenceSpeed.Measure(checkpoint, first.Kind, first.ClassNames.Count, profile.SegHead, first.ImageSize, device);
        return new DenseBenchOutcome(profile, cells, seconds, Path.GetFileName(checkpoint), suiteDir, dbPath)
        {
            Speeds = speeds, SpeedSetting = $"{first.Name} model ({(first.Kind == DenseKind.Segmentation ? profile.SegHead + " head" : "FCOS head")}), batch 32 at {first.ImageSize} px, median of 7 interleaved rounds of 4 batches",
        };
    }

    TrainOptions Options(string normalization, double lr) => new()
    {
        Epochs = profile.Epochs, WarmupEpochs = profile.WarmupEpochs, BatchSize = profile.BatchSize, Lr = lr, DropPath = 0.1,
        Normalization = normalization, EvalBatchSize = 64, WarmupLr = 1e-6, MinLr = 1e-5,
    };

    double? HeadLr(DenseKind kind) => profile.HeadLrs.TryGetValue(kind, out var lr) ? lr : null;

    DenseBenchCell Cell(RunExecutor executor, DenseTask task, DenseTaskInfo info, string method, BackboneSpec backbone, string normalization)
    {
        var settings = method == "partial-k" ? new Dictionary<string, string> { ["k"] = "1" } : new Dictionary<string, string>();
        var lrs = profile.LrsFor(method);
        double seconds = 0;
        string trainSplit = "train", valSplit = "val";
        var search = new List<RunRecord>();
        if (lrs.Count > 1)
            foreach (var lr in lrs)
            {
                var request = DenseRunRequest.Create(task, method, settings, Options(normalization, lr), backbone, trainSplit, valSplit, info.ImageSize, profile.SegHead,
                                                     trainImages: profile.TrainImages, evalImages: profile.ValImages, headLr: HeadLr(info.Kind));
                var record = executor.Execute(request, $"{task.Name} {method} lr {lr:G3} (search)");
                seconds += record.Outcome?.TrainSeconds ?? 0;
                search.Add(record);
            }
        var best = search.Where(r => r.Status == RunStatus.Finished).MaxBy(r => r.Top1 ?? -1);
        double chosen = best?.Spec.Lr ?? lrs[0];
        if (lrs.Count > 1 && best == null)
            return new DenseBenchCell(task.Name, info.Kind, method, null, null, null, null, search.FirstOrDefault(r => r.Error != null)?.Error ?? "no search run finished", seconds);
        var final = executor.Execute(DenseRunRequest.Create(task, method, settings, Options(normalization, chosen), backbone, "train+val", "test", info.ImageSize, profile.SegHead,
                                                                 trainImages: profile.TrainImages, valImages: profile.ValImages, evalImages: profile.TestImages, headLr: HeadLr(info.Kind)),
                                     $"{task.Name} {method} lr {chosen:G3} (final)");
        seconds += final.Outcome?.TrainSeconds ?? 0;
        return new DenseBenchCell(task.Name, info.Kind, method, final.Top1, best?.Top1, chosen, final.Status == RunStatus.Finished ? final : null,
                                  final.Status == RunStatus.Finished ? null : final.Error ?? "failed", seconds);
    }
}
