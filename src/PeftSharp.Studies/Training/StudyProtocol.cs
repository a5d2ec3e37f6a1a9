using PeftSharp.Interop;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Results;
using PeftSharp.Tuners;
using TorchSharp;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Training;

/// <summary>A dense tune request's run settings (<see cref="TuneSpec.Dense"/>): the input size, the segmentation head
/// (detection has FCOS), the head's learning rate (null: each run's lr), the test images scored (null: all).</summary>
public sealed record DenseSweep(int ImageSize = 64, string SegHead = "uper", double? HeadLr = null, int? TestImages = null);

/// <summary>A tune request: one task, one method (or composition), the grid, the training settings, the seeds.</summary>
public sealed record TuneSpec
{
    public required string TaskDirectory { get; init; }
    public required BackboneSpec Backbone { get; init; }
    public required string Method { get; init; }
    /// <summary>Fixed hyperparameters (--set), applied to every grid point.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();
    /// <summary>The method's own grid: hyperparameter → values (text, as --set takes them).</summary>
    public IReadOnlyDictionary<string, string[]> MethodGrid { get; init; } = new Dictionary<string, string[]>();
    public IReadOnlyList<double> Lrs { get; init; } = new[] { 1e-3, 1e-2 };
    public IReadOnlyList<double> WeightDecays { get; init; } = new[] { 1e-4, 1e-3 };
    public TrainOptions Train { get; init; } = new();
    /// <summary>The search uses the first seed; the chosen configuration is retrained once per seed.</summary>
    public IReadOnlyList<int> Seeds { get; init; } = new[] { 42 };
    /// <summary>A shrunken protocol for tight time budgets: search on the first <see cref="TrainImages"/> of train800,
    /// select on the first <see cref="ValImages"/> of val200, retrain on both together (null: the whole splits).
    /// Run records name the splits so ("train800[:240]"), so shrunken and full runs never share a key.</summary>
    public int? TrainImages { get; init; }
    public int? ValImages { get; init; }
    /// <summary>How a class-per-folder tree without splits is split (null: <see cref="Data.SplitRule"/>'s defaults).</summary>
    public SplitRule? SplitRule { get; init; }
    /// <summary>Set for a dense task (a segmentation or COCO folder): the runs are dense runs with these settings.</summary>
    public DenseSweep? Dense { get; init; }
    /// <summary>Search by successive halving instead of training every grid point fully (null: the whole grid). Not part
    /// of the sweep id: the chosen configuration's final runs are the grid search's runs of that configuration.</summary>
    public HalvingSearch? Halving { get; init; }

    /// <summary>The study's grid for a method: every hyperparameter's grid (methods.md), unless fixed by --set.</summary>
    public static Dictionary<string, string[]> StudyGrid(string methodSpec, IReadOnlyDictionary<string, string> fixedSettings)
    {
        var methods = TunerRegistry.Parse(methodSpec);
        var grid = new Dictionary<string, string[]>();
        foreach (var m in methods)
            foreach (var h in m.Hypers.Where(h => h.Grid.Length > 0))
            {
                string name = methods.Count > 1 ? $"{m.Id}.{h.Name}" : h.Name;
                if (fixedSettings.ContainsKey(name) || fixedSettings.ContainsKey(h.Name)) continue;
                grid[name] = h.Grid.Select(HyperSpec.Fmt).ToArray();
            }
        return grid;
    }

    /// <summary>Every grid point: lr × wd × the method grid, in a fixed order.</summary>
    public IReadOnlyList<(double Lr, double Wd, Dictionary<string, string> Settings)> Points()
    {
        var combos = new List<Dictionary<string, string>> { new(Settings) };
        foreach (var (name, values) in MethodGrid.OrderBy(g => g.Key, StringComparer.Ordinal))
            combos = combos.SelectMany(c => values.Select(v => new Dictionary<string, string>(c) { [name] = v })).ToList();
        return (from lr in Lrs from wd in WeightDecays from c in combos select (lr, wd, c)).ToList();
    }
}

/// <summary>What a tune produced: the chosen configuration (null when the grid had one point, so no search ran, or
/// when no search run finished) and its test accuracy per seed.</summary>
public sealed record TuneResult(string SweepId, RunRecord? Best, IReadOnlyList<RunRecord> Search, IReadOnlyList<RunRecord> Final)
{
    /// <summary>The search's compute: training images seen by all its runs (epochs × images, each run counted whether it
    /// trained now or was read back).</summary>
    public long SearchImages { get; init; }

    public IReadOnlyList<double> TestTop1 => Final.Where(r => r.Top1 != null).Select(r => r.Top1!.Value * 100).ToList();
    public double? Mean => TestTop1.Count > 0 ? TestTop1.Average() : null;
    public double? StdDev => TestTop1.Count > 1 ? Math.Sqrt(TestTop1.Sum(t => (t - Mean!.Value) * (t - Mean.Value)) / (TestTop1.Count - 1)) : null;
}

/// <summary>
/// The unifying study's protocol: each configuration of lr × wd × the method's grid trains on train800 and is
/// scored on val200 at the last epoch; the best is retrained on train800val200 and scored on test (a one-point grid
/// skips the search: there is nothing to choose). Images are decoded
/// once per split for the whole sweep. Rerunning the same tune skips every finished run.
/// </summary>
public sealed class StudyProtocol
{
    readonly RunExecutor executor;

    public StudyProtocol(RunExecutor executor) => this.executor = executor;

    public TuneResult Tune(TuneSpec spec)
    {
        var plan = TunePlan.Create(spec);
        if (plan.SkipsSearch) return new TuneResult(plan.SweepId, null, new List<RunRecord>(), Final(0));
        var (search, chosen, best) = spec.Halving is { } halving ? Halve(plan, halving) : Grid(plan);
        return new TuneResult(plan.SweepId, best, search, chosen is int p ? Final(p) : new List<RunRecord>())
        {
            SearchImages = search.Sum(r => (long)r.Spec.Epochs * plan.TrainImages(r.Spec)),
        };

        List<RunRecord> Final(int point)
        {
            var (trainVal, test) = plan.Loaders(RunStage.Final);
            using (trainVal)
            using (test)
                return spec.Seeds.Select(seed => executor.Execute(plan.Request(RunStage.Final, point, seed, trainVal, test),
                                                                  plan.Label(RunStage.Final, point, seed))).ToList();
        }
    }

    /// <summary>Every grid point trained fully on the search split; the best by <see cref="BestConfiguration"/>.</summary>
    (List<RunRecord> Search, int? Chosen, RunRecord? Best) Grid(TunePlan plan)
    {
        var search = new List<RunRecord>();
        var (train, val) = plan.Loaders(RunStage.Search);
        using (train)
        using (val)
        {
            for (int i = 0; i < plan.Points.Count; i++)
                search.Add(executor.Execute(plan.Request(RunStage.Search, i, plan.SearchSeed, train, val), plan.Label(RunStage.Search, i, plan.SearchSeed)));
        }
        var best = Best(search);
        return (search, best == null ? null : search.IndexOf(best), best);   // search[i] is the run of points[i]
    }

    /// <summary>Successive halving: each rung's runs through the executor (so a finished rung is read back, never
    /// retrained), the survivors of the last rung's choice.</summary>
    (List<RunRecord> Search, int? Chosen, RunRecord? Best) Halve(TunePlan plan, HalvingSearch halving)
    {
        var loaders = new Dictionary<int, (DataLoader Train, DataLoader Val)>();
        try
        {
            var (runs, chosen, best) = halving.Select(plan.Points.Count, (point, rung) =>
            {
                if (!loaders.TryGetValue(rung.Index, out var pair)) loaders[rung.Index] = pair = plan.RungLoaders(rung);
                return executor.Execute(plan.RungRequest(point, rung, pair.Train, pair.Val), plan.RungLabel(point, rung));
            });
            return (runs.ToList(), chosen, best);
        }
        finally
        {
            foreach (var (train, val) in loaders.Values)
            {
                train.Dispose();
                val.Dispose();
            }
        }
    }

    /// <summary>The chosen configuration (<see cref="BestConfiguration"/>).</summary>
    public static RunRecord? Best(IEnumerable<RunRecord> search) => BestConfiguration.Best(search);

    /// <summary>A deterministic id for the sweep, so rerunning the same tune resumes it (and only it).</summary>
    internal static string SweepId(TuneSpec spec, ImageTask task)
    {
        var o = new JsonObject
        {
            ["task"] = task.Name, ["method"] = spec.Method,
            ["settings"] = new JsonObject(spec.Settings.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["grid"] = new JsonObject(spec.MethodGrid.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonArray(kv.Value.Select(v => (JsonNode)v).ToArray())))),
            ["lrs"] = new JsonArray(spec.Lrs.Select(v => (JsonNode)v).ToArray()),
            ["wds"] = new JsonArray(spec.WeightDecays.Select(v => (JsonNode)v).ToArray()),
            ["model"] = spec.Backbone.ModelJson, ["training"] = RunSpecs.TrainingJson(spec.Train), ["epochs"] = spec.Train.Epochs,
            ["batch"] = spec.Train.BatchSize, ["seed"] = spec.Seeds[0],
        };
        if (task.Layout.StartsWith("class-folders", StringComparison.Ordinal)) o["layout"] = task.Layout;
        if (spec.TrainImages != null || spec.ValImages != null)
        {
            o["train_images"] = spec.TrainImages;
            o["val_images"] = spec.ValImages;
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(o.ToJsonString()));
        return $"{task.Name}/{spec.Method}/{Convert.ToHexStringLower(hash)[..12]}";
    }
}

/// <summary>The datasets and names of the protocol's three training/selection splits: VTAB-1K's own, or their
/// shrunken prefixes (<see cref="TuneSpec.TrainImages"/>).</summary>
public sealed record ProtocolSplits(ImageDataset SearchTrain, string SearchTrainName, ImageDataset SearchVal, string SearchValName,
                                    ImageDataset FinalTrain, string FinalTrainName)
{
    public static ProtocolSplits Of(ImageTask task, int? trainImages, int? valImages)
    {
        if (task.ValName == null)
        {
            if (trainImages != null || valImages != null) throw new PeftSharpException($"{task.Directory}: a shrunken protocol needs a validation split, and this task has none (layout {task.Layout})");
            return new(task.Train, task.TrainName, DatasetView.Select(task.Train, [], "no validation split"), "none", task.TrainVal, task.TrainValName);
        }
        if (trainImages == null && valImages == null)
            return new(task.Train, task.TrainName, task.Val, task.ValName, task.TrainVal, task.TrainValName);
        if (trainImages == null || valImages == null)
            throw new PeftSharpException("a shrunken protocol needs both the number of training and of validation images");
        var train = DatasetView.Prefix(task.Train, trainImages.Value);
        var val = DatasetView.Prefix(task.Val, valImages.Value);
        string trainName = $"{task.TrainName}[:{trainImages}]", valName = $"{task.ValName}[:{valImages}]";
        return new(train, trainName, val, valName, DatasetView.Concat(train, val), $"{trainName}+{valName}");
    }
}
