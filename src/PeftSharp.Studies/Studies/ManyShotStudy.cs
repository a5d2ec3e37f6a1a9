using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Results;
using PeftSharp.Suite;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Reporting;
using static PeftSharp.Reporting.Charts;
using static PeftSharp.Reporting.Html;
using static PeftSharp.Studies.StudyReport;

namespace PeftSharp.Studies;

/// <summary>How one method trains in the many-shot study: one learning rate and fixed hyperparameters (no search).</summary>
public sealed record ManyShotMethod(string Method, double Lr, IReadOnlyDictionary<string, string> Settings)
{
    public ManyShotMethod(string method, double lr, params (string Name, string Value)[] settings)
        : this(method, lr, settings.ToDictionary(s => s.Name, s => s.Value)) { }

    public override string ToString() =>
        $"{Method} lr {Lr.ToString("G", CultureInfo.InvariantCulture)}{string.Concat(Settings.Select(s => $", {s.Key} {s.Value}"))}";
}

/// <summary>What the many-shot study runs: nested training sets of growing size (prefixes of Fashion-MNIST's
/// training file), one fixed test subset, and each method's one configuration.</summary>
public sealed record ManyShotProfile
{
    public required string Name { get; init; }
    public required IReadOnlyList<int> TrainSizes { get; init; }
    /// <summary>The first N images of the test file, the same for every cell.</summary>
    public required int TestImages { get; init; }
    public required IReadOnlyList<ManyShotMethod> Methods { get; init; }
    public required int Epochs { get; init; }
    public int WarmupEpochs { get; init; }
    public int BatchSize { get; init; } = 32;
    public double WeightDecay { get; init; } = 1e-4;
    /// <summary>RandomResizedCrop + flips, as the study's many-shot runs (off in the short profiles: two-epoch runs
    /// on a 32-px backbone have no time to profit from it).</summary>
    public bool Augment { get; init; }
    public int Seed { get; init; } = 42;
    /// <summary>Why these methods, learning rates and sizes (the report header says it).</summary>
    public string Rationale { get; init; } = "";

    public TrainOptions Training(string normalization) => new()
    {
        Epochs = Epochs, WarmupEpochs = WarmupEpochs, BatchSize = BatchSize, DropPath = 0.1, EvalBatchSize = 256,
        Augment = Augment, Seed = Seed, Normalization = Normalization.FromName(normalization).Name,
    };

    public string Description() =>
        $"Fashion-MNIST, training sets of {string.Join(", ", TrainSizes.Select(n => n.ToString("N0", CultureInfo.InvariantCulture)))} images " +
        $"(nested prefixes of the 60,000-image training file), tested on the first {TestImages:N0} of the test file; " +
        $"one configuration per method, no search ({string.Join("; ", Methods)}); wd {WeightDecay.ToString("G", CultureInfo.InvariantCulture)}, " +
        $"{Epochs} epochs ({WarmupEpochs} warm-up), batch {BatchSize}, drop-path 0.1, augmentation {(Augment ? "RandomResizedCrop + flip" : "none")}; seed {Seed}";
}

/// <summary>One (method, training-set size) cell: its test top-1 (%), or why there is none.</summary>
public sealed record ManyShotCell(string Method, int TrainSize, double? Top1, long? TrainableParams = null, double? TrainSeconds = null, string? Error = null);

/// <summary>Full fine-tuning against the best PEFT method (and the linear probe) at one training-set size.</summary>
public sealed record ManyShotGap(int TrainSize, double Full, string BestPeft, double BestPeftTop1, double? Linear, int PeftBeaten, int PeftCount)
{
    /// <summary>Full fine-tuning's top-1 minus the best PEFT method's (positive: full fine-tuning is ahead).</summary>
    public double Gap => Full - BestPeftTop1;
}

/// <summary>The study's claim (4), checked on our cells: does full fine-tuning catch up with PEFT as the data grows?</summary>
public sealed record CatchUpVerdict(IReadOnlyList<ManyShotGap> Gaps, bool Narrows, int? CatchesUpAt, int? OvertakesAt, string Text);

/// <summary>
/// The study's fourth finding, its data side: the same methods trained on growing training sets, to show where full
/// fine-tuning catches up with PEFT. Each cell is one run (the training-set size is part of its key, as its split
/// name "train[:N]"), read back from the database when finished, so a killed study resumes where it stopped.
/// </summary>
public sealed class ManyShotStudy : IStudy
{
    /// <summary>The dataset name in run records: the whole IDX files, not the suite's 1000-image fashion-mnist task.</summary>
    public const string Dataset = "fashion-mnist-idx";
    /// <summary>PEFT within this many points of the best PEFT method counts as caught up.</summary>
    public const double CatchUpPoints = 1.0;

    public string Name => "many-shot";
    public string Summary => "accuracy vs training-set size (Fashion-MNIST): where full fine-tuning catches up with PEFT";

    const string FashionXrayRationale = "Each method's learning rate and capacity knob are the ones the benchmark's default profile chose " +
        "on fashion-xray, the suite's Fashion-MNIST-derived task (full fine-tuning 3e-4, the others 3e-3; LoRA rank 8, Houlsby rank 16), " +
        "fixed for every size instead of searched, which would multiply the runs by the grid.";

    public static ManyShotProfile Profile(string name) => name switch
    {
        "quick" => new()
        {
            Name = "quick", TrainSizes = new[] { 500, 2000 }, TestImages = 1000, Epochs = 2,
            Methods = new ManyShotMethod[] { new("linear", 3e-3), new("full", 3e-4), new("lora", 3e-3, ("rank", "8")) },
            Rationale = FashionXrayRationale,
        },
        "default" => new()
        {
            Name = "default", TrainSizes = new[] { 250, 1000, 4000, 16000 }, TestImages = 2000, Epochs = 3,
            Methods = new ManyShotMethod[]
            {
                new("linear", 3e-3), new("full", 3e-4), new("lora", 3e-3, ("rank", "8")), new("ssf", 3e-3),
                new("adapter-houlsby", 3e-3, ("rank", "16")),
            },
            Rationale = FashionXrayRationale + " Sizes grow 4× a step from 250 images (the scale of the benchmark's shrunken VTAB-1K splits) " +
                        "to 16,000; every run trains 3 epochs, so a larger set also trains proportionally more steps, as in the study's " +
                        "fixed-epoch protocol. The 30-minute budget on 2 cores bounds the largest size and the epochs.",
        },
        // The study's many-shot protocol (protocol.md): 40 epochs (4 warm-up), augmentation, batch 64, the full training set
        // and subsets; its lr grid {5e-4, 1e-3} is not searched: full fine-tuning takes the lower value, PEFT the upper.
        "full" => new()
        {
            Name = "full", TrainSizes = new[] { 1000, 5000, 20000, 60000 }, TestImages = 10000, Epochs = 40, WarmupEpochs = 4,
            BatchSize = 64, Augment = true,
            Methods = new ManyShotMethod[]
            {
                new("linear", 1e-3), new("full", 5e-4), new("lora", 1e-3, ("rank", "16")), new("ssf", 1e-3),
                new("adapter-houlsby", 1e-3, ("rank", "64")), new("fact-tk", 1e-3, ("rank", "32")),
            },
            Rationale = "The study's many-shot settings (40 epochs, 4 warm-up, augmentation, batch 64) on the whole training file and three " +
                        "subsets; its lr grid {5e-4, 1e-3} is not searched: full fine-tuning takes 5e-4, the PEFT methods 1e-3.",
        },
        _ => throw new PeftSharpException($"unknown study profile '{name}'; expected one of {string.Join(", ", StudyCatalog.Profiles)}"),
    };

    public StudyOutput Run(StudyContext context, string profileName, StudyOverrides? overrides = null) =>
        Run(context, Narrow(Profile(profileName), overrides ?? new StudyOverrides()));

    /// <summary>The profile narrowed from the command line: --methods keeps the recipes it names, --epochs and --sizes
    /// replace the profile's; --tasks does not apply (the study has one dataset).</summary>
    static ManyShotProfile Narrow(ManyShotProfile profile, StudyOverrides overrides)
    {
        if (overrides.Tasks != null) throw new PeftSharpException("tasks", "many-shot study: a task list does not apply; the study runs on Fashion-MNIST (its data folder holds the IDX files)");
        var methods = profile.Methods;
        if (overrides.Methods != null)
        {
            var unknown = overrides.Methods.FirstOrDefault(m => profile.Methods.All(r => r.Method != m));
            if (unknown != null)
                throw new PeftSharpException($"many-shot: no configuration for method '{unknown}' in the {profile.Name} profile; expected some of {string.Join(", ", profile.Methods.Select(m => m.Method))}");
            methods = profile.Methods.Where(r => overrides.Methods.Contains(r.Method)).ToList();
        }
        return profile with { Methods = methods, Epochs = overrides.Epochs ?? profile.Epochs, TrainSizes = overrides.TrainSizes ?? profile.TrainSizes };
    }

    /// <summary>Runs every (size, method) cell of <paramref name="profile"/> (finished ones read back) and reports them.</summary>
    public StudyOutput Run(StudyContext context, ManyShotProfile profile)
    {
        var watch = Stopwatch.StartNew();
        string folder = context.Options.DataDir ?? FashionMnist.DefaultFolder;
        var (train, test) = FashionMnist.Open(folder);
        Validate(profile, train, test);
        var training = profile.Training(context.Normalization) with { Precision = context.Options.Precision };
        var cells = new List<ManyShotCell>();
        var identity = new CellIdentity(context, profile, training, FashionMnist.Fingerprint(folder));
        int imageSize = context.Backbone.ImageSize();
        using var testLoader = TrainingData.Loader(DatasetView.Prefix(test, profile.TestImages), imageSize, training, shuffle: false);
        // Sizes outer, so a study stopped early has its small sizes complete for every method.
        foreach (int size in profile.TrainSizes)
        {
            using var trainLoader = TrainingData.Loader(DatasetView.Prefix(train, size), imageSize, training, shuffle: true);
            foreach (var method in profile.Methods)
            {
                var request = new RunRequest(identity.Spec(method, size), context.Backbone, method.Settings,
                                             training with { Lr = method.Lr, WeightDecay = profile.WeightDecay },
                                             trainLoader, testLoader, train.NumClasses, folder);
                cells.Add(Cell(context.Executor.Execute(request, $"many-shot {method.Method} n={size}"), method.Method, size));
            }
        }
        if (cells.All(c => c.Top1 == null)) throw new PeftSharpException($"many-shot: no run finished ({cells.First().Error})");
        var verdict = CatchUp(cells);
        var json = Header(Name, profile.Name, profile.Description(), context, watch.Elapsed.TotalSeconds);
        json["rationale"] = profile.Rationale;
        json["train_sizes"] = Array(profile.TrainSizes.Select(n => (JsonNode)n));
        json["test_images"] = profile.TestImages;
        json["cells"] = Array(cells.Select(c => (JsonNode)new JsonObject
        {
            ["method"] = c.Method, ["train_size"] = c.TrainSize, ["top1"] = c.Top1 is double t ? Round(t) : null,
            ["trainable_params"] = c.TrainableParams, ["train_seconds"] = c.TrainSeconds is double s ? Math.Round(s, 1) : null, ["error"] = c.Error,
        }));
        json["gaps"] = Array(verdict.Gaps.Select(g => (JsonNode)new JsonObject
        {
            ["train_size"] = g.TrainSize, ["full"] = Round(g.Full), ["best_peft"] = g.BestPeft, ["best_peft_top1"] = Round(g.BestPeftTop1),
            ["gap"] = Round(g.Gap), ["linear"] = g.Linear is double l ? Round(l) : null, ["peft_beaten_by_full"] = g.PeftBeaten, ["peft_methods"] = g.PeftCount,
        }));
        json["catch_up"] = new JsonObject
        {
            ["narrows"] = verdict.Narrows, ["within_one_point_at"] = verdict.CatchesUpAt, ["overtakes_at"] = verdict.OvertakesAt, ["claim"] = verdict.Text,
        };
        var table = SummaryTable(profile, cells);
        string summary = table.ToMarkdown() + "\n" + $"- {verdict.Text}\n";
        return new StudyOutput(Name, json, Html(profile, cells, verdict, table, watch.Elapsed.TotalSeconds), summary);
    }

    static void Validate(ManyShotProfile profile, ImageDataset train, ImageDataset test)
    {
        if (profile.TrainSizes.Count == 0 || profile.Methods.Count == 0) throw new PeftSharpException("many-shot: expected at least one training size and one method");
        foreach (int size in profile.TrainSizes.Where(n => n < 1 || n > train.Count))
            throw new PeftSharpException($"many-shot: a training set of {size} images does not fit {train.Source}, which has {train.Count}");
        if (profile.TestImages < 1 || profile.TestImages > test.Count)
            throw new PeftSharpException($"many-shot: {profile.TestImages} test images do not fit {test.Source}, which has {test.Count}");
        foreach (var m in profile.Methods) TunerRegistry.ResolveHypers(m.Method, m.Settings);   // fail fast on a bad recipe
    }

    /// <summary>The run key of a cell: everything the benchmark's runs hash, plus the training-set size (its split
    /// name) and the data's fingerprint.</summary>
    sealed class CellIdentity(StudyContext context, ManyShotProfile profile, TrainOptions training, string fingerprint)
    {
        readonly string checkpoint = context.Backbone.CheckpointIdentity();

        public RunSpec Spec(ManyShotMethod method, int size) =>
            RunSpecs.Trained(RunStage.Final, Dataset, $"train[:{size}]", $"t10k[:{profile.TestImages}]", method.Method, method.Settings,
                             training with { Lr = method.Lr, WeightDecay = profile.WeightDecay }, JsonValue.Create(fingerprint),
                             context.Backbone.ModelJson, checkpoint, sweepId: "many-shot");
    }

    static ManyShotCell Cell(RunRecord run, string method, int size) => run.Status == RunStatus.Finished
        ? new(method, size, run.Top1 * 100, run.Outcome?.TrainableParams, run.Outcome?.TrainSeconds)
        : new(method, size, null, Error: run.Error ?? "did not finish");

    static bool IsPeft(string method) => TunerRegistry.IsPeft(method);

    /// <summary>
    /// Whether full fine-tuning catches up with PEFT as the training set grows: at each size with a finished full
    /// fine-tuning cell and at least one PEFT cell, full fine-tuning's top-1 minus the best PEFT method's. It catches up
    /// at the first size where that gap is within <see cref="CatchUpPoints"/>, overtakes where it is positive, and the
    /// gap narrows when it is larger (in full fine-tuning's favour) at the largest size than at the smallest.
    /// </summary>
    public static CatchUpVerdict CatchUp(IReadOnlyList<ManyShotCell> cells)
    {
        var done = cells.Where(c => c.Top1 != null).ToList();
        var gaps = done.Select(c => c.TrainSize).Distinct().Order().Select(size =>
        {
            var at = done.Where(c => c.TrainSize == size).ToList();
            var full = at.FirstOrDefault(c => c.Method == "full");
            var peft = at.Where(c => IsPeft(c.Method)).OrderByDescending(c => c.Top1).ToList();
            if (full == null || peft.Count == 0) return null;
            return new ManyShotGap(size, full.Top1!.Value, peft[0].Method, peft[0].Top1!.Value, at.FirstOrDefault(c => c.Method == "linear")?.Top1,
                                   peft.Count(p => full.Top1 > p.Top1), peft.Count);
        }).OfType<ManyShotGap>().ToList();
        if (gaps.Count < 2)
            return new CatchUpVerdict(gaps, false, null, null, "Needs full fine-tuning and a PEFT method at two or more training-set sizes to say whether full fine-tuning catches up.");
        var first = gaps[0];
        var last = gaps[^1];
        bool narrows = last.Gap > first.Gap;
        int? catchesUp = gaps.FirstOrDefault(g => g.Gap >= -CatchUpPoints)?.TrainSize;
        int? overtakes = gaps.FirstOrDefault(g => g.Gap > 0)?.TrainSize;
        string Size(int n) => n.ToString("N0", CultureInfo.InvariantCulture);
        string facts = $"Full fine-tuning minus the best PEFT method: {first.Gap:+0.00;-0.00} points at {Size(first.TrainSize)} images ({first.BestPeft}), " +
                       $"{last.Gap:+0.00;-0.00} at {Size(last.TrainSize)} ({last.BestPeft}); at {Size(last.TrainSize)} it beats {last.PeftBeaten} of {last.PeftCount} PEFT methods" +
                       (last.Linear is double l ? $" and is {last.Full - l:+0.00;-0.00} points from the linear probe." : ".");
        string verdict = Verdict(first, last, narrows, catchesUp, overtakes, Size);
        return new CatchUpVerdict(gaps, narrows, catchesUp, overtakes, facts + " " + verdict);
    }

    /// <summary>The claim in words. Full fine-tuning level with PEFT already at the smallest size is its own case:
    /// there is nothing to catch up, so only the many-shot half of the claim is tested.</summary>
    static string Verdict(ManyShotGap first, ManyShotGap last, bool narrows, int? catchesUp, int? overtakes, Func<int, string> size)
    {
        const string Study = "The study: PEFT wins in the low-data regime and full fine-tuning catches up in the many-shot regime (on full data its best PEFT method stays slightly ahead).";
        if (first.Gap >= -CatchUpPoints)
            return $"Full fine-tuning is already within {CatchUpPoints:0} point of the best PEFT method at the smallest size, {size(first.TrainSize)} images, and " +
                   (last.Gap > first.Gap ? "pulls further ahead with more data. " : "stays level or falls back with more data. ") +
                   $"{Study} Agrees that full fine-tuning is competitive with plenty of data; the low-data half (PEFT ahead) does not show at these sizes.";
        if (last.Gap > 0) return $"Full fine-tuning catches up and overtakes (ahead from {size(overtakes!.Value)} images on). {Study} Agrees; here it even overtakes.";
        if (last.Gap >= -CatchUpPoints) return $"Full fine-tuning catches up to within {CatchUpPoints:0} point at {size(catchesUp!.Value)} images but does not overtake. {Study} Agrees.";
        return narrows
            ? $"The gap narrows by {last.Gap - first.Gap:0.00} points, but full fine-tuning is still {-last.Gap:0.00} behind at the largest size. {Study} Agrees in direction; it has not caught up at these sizes."
            : $"The gap does not narrow ({first.Gap:+0.00;-0.00} → {last.Gap:+0.00;-0.00}). {Study} Disagrees here.";
    }

    static ReportTable SummaryTable(ManyShotProfile profile, IReadOnlyList<ManyShotCell> cells)
    {
        var sizes = profile.TrainSizes;
        var header = new[] { "method", "trainable params" }.Concat(sizes.Select(n => $"n = {n.ToString("N0", CultureInfo.InvariantCulture)}"))
            .Append($"gain {sizes[0]} → {sizes[^1]}").ToList();
        var rows = profile.Methods.Select(m =>
        {
            var mine = sizes.Select(n => cells.FirstOrDefault(c => c.Method == m.Method && c.TrainSize == n)).ToList();
            double? gain = mine[0]?.Top1 is double a && mine[^1]?.Top1 is double b && sizes.Count > 1 ? b - a : null;
            return (IReadOnlyList<string>)new[] { m.Method, (mine.Max(c => c?.TrainableParams) ?? 0).ToString("N0", CultureInfo.InvariantCulture) }
                .Concat(mine.Select(c => c?.Top1 is double v ? F(v) : "failed")).Append(F(gain, "+0.00;-0.00")).ToList();
        });
        return new ReportTable(header, rows);
    }

    string Html(ManyShotProfile profile, IReadOnlyList<ManyShotCell> cells, CatchUpVerdict verdict, ReportTable summary, double seconds)
    {
        var series = cells.Where(c => c.Top1 != null).GroupBy(c => c.Method)
            .Select(g => new ChartSeries(g.Key, g.OrderBy(c => c.TrainSize).Select(c => ((double)c.TrainSize, c.Top1!.Value)).ToList())).ToList();
        var sections = new List<string>
        {
            Section("Accuracy vs training-set size", LineChart(series, "training images (log scale)", "test top-1 %", logX: true),
                    $"One line per method; every point is tested on the same first {profile.TestImages:N0} images of Fashion-MNIST's test file."),
            Section("Every cell", summary.ToHtml(), "Test top-1 %. Trainable parameters exclude the head."),
            Section("Full fine-tuning vs PEFT", HtmlTable(new[] { "train size", "full", "best PEFT", "its top-1", "full − best PEFT", "linear", "PEFT methods full beats" },
                verdict.Gaps.Select(g => (IReadOnlyList<string>)new[]
                {
                    g.TrainSize.ToString("N0", CultureInfo.InvariantCulture), F(g.Full), g.BestPeft, F(g.BestPeftTop1), F(g.Gap, "+0.00;-0.00"), F(g.Linear), $"{g.PeftBeaten} of {g.PeftCount}",
                }))),
            Section("Claim checked", $"<p>{Esc(verdict.Text)}</p>"),
        };
        var failed = cells.Where(c => c.Error != null).ToList();
        if (failed.Count > 0)
            sections.Add(Section("Failed cells", HtmlTable(new[] { "method", "train size", "error" },
                failed.Select(c => (IReadOnlyList<string>)new[] { c.Method, c.TrainSize.ToString(CultureInfo.InvariantCulture), c.Error! }))));
        return Page("PeftSharp study: many-shot", $"Profile {profile.Name}: {profile.Description()}. {profile.Rationale} {seconds / 60:F1} min.", sections);
    }
}
