using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Results;
using PeftSharp.Tuners;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Training;

/// <summary>
/// The runs a tune request stands for, whoever executes them: the task, the grid points, the sweep id, and each
/// run's identity and request. <see cref="StudyProtocol"/> executes them in one process; PeftSharp.Sweeps queues the
/// same runs (the same keys) for workers.
/// </summary>
public sealed class TunePlan : Sweeps.ISweepPlan
{
    TunePlan(TuneSpec spec, ImageTask task)
    {
        Spec = spec;
        Task = task;
        Points = spec.Points();
        foreach (var (_, _, settings) in Points) TunerRegistry.ResolveHypers(spec.Method, settings);   // fail fast on a bad grid
        ImageSize = spec.Backbone.ImageSize();
        Splits = ProtocolSplits.Of(task, spec.TrainImages, spec.ValImages);
        if (task.ValName == null && !SkipsSearch)
            throw new PeftSharpException($"{task.Directory}: the search needs a validation split, and this task has none (layout {task.Layout}); add val.txt or a val/ folder, or search a one-point grid");
        SweepId = StudyProtocol.SweepId(spec, task);
        Checkpoint = spec.Backbone.CheckpointIdentity();
        dataIdentity = new() { [RunStage.Search] = Splits.SearchVal.Count > 0 ? Data(RunStage.Search) : new JsonObject(), [RunStage.Final] = Data(RunStage.Final) };
    }

    readonly Dictionary<RunStage, JsonObject> dataIdentity;

    public static TunePlan Create(TuneSpec spec) => new(spec, ImageTask.Open(spec.TaskDirectory, spec.SplitRule));

    public TuneSpec Spec { get; }
    public ImageTask Task { get; }
    public IReadOnlyList<(double Lr, double Wd, Dictionary<string, string> Settings)> Points { get; }
    public int ImageSize { get; }
    /// <summary>The search and retraining splits: VTAB-1K's own, or their shrunken prefixes.</summary>
    public ProtocolSplits Splits { get; }
    public string SweepId { get; }
    /// <summary>The backbone's identity ("file sha256:…"), hashed once for the whole sweep.</summary>
    public string Checkpoint { get; }

    /// <summary>One configuration leaves nothing to select on val200: it is retrained on train800val200 directly.</summary>
    public bool SkipsSearch => Points.Count == 1 && Spec.Seeds.Count > 0;

    /// <summary>The search trains every point with the first seed.</summary>
    public int SearchSeed => Spec.Seeds[0];

    string TrainSplit(RunStage stage) => stage == RunStage.Search ? Splits.SearchTrainName : Splits.FinalTrainName;
    string EvalSplit(RunStage stage) => stage == RunStage.Search ? Splits.SearchValName : Task.TestName;

    /// <summary>What a stage's run trains and is scored on (see <see cref="ImageTask.Fingerprint(string)"/>).</summary>
    JsonObject Data(RunStage stage) => stage == RunStage.Search
        ? RunSpecs.DataIdentity(Splits.SearchTrain, Splits.SearchVal, Task.Directory)
        : RunSpecs.DataIdentity(Splits.FinalTrain, Task.Test, Task.Directory);

    public RunSpec RunSpec(RunStage stage, int point, int seed)
    {
        var (lr, wd, settings) = Points[point];
        return RunSpecs.Trained(stage, Task.Name, TrainSplit(stage), EvalSplit(stage), Spec.Method, settings,
                                Spec.Train with { Lr = lr, WeightDecay = wd, Seed = seed }, dataIdentity[stage], Spec.Backbone.ModelJson, Checkpoint, SweepId);
    }

    /// <summary>The grid point a stored run of this plan stands for (null: the run is not one of this plan's).</summary>
    public int? PointOf(RunSpec stored)
    {
        string key = stored.Key;
        for (int i = 0; i < Points.Count; i++)
            if (RunSpec(stored.Stage, i, stored.Seed).Key == key) return i;
        return null;
    }

    public RunRequest Request(RunStage stage, int point, int seed, DataLoader train, DataLoader eval)
    {
        var (lr, wd, settings) = Points[point];
        return new RunRequest(RunSpec(stage, point, seed), Spec.Backbone, settings, Spec.Train with { Lr = lr, WeightDecay = wd, Seed = seed },
                              train, eval, Task.NumClasses, Task.Directory);
    }

    /// <summary>The (train, eval) loaders of a stage; one pair serves every run of that stage.</summary>
    public (DataLoader Train, DataLoader Eval) Loaders(RunStage stage) => stage == RunStage.Search
        ? (TrainingData.Loader(Splits.SearchTrain, ImageSize, Spec.Train, shuffle: true), TrainingData.Loader(Splits.SearchVal, ImageSize, Spec.Train, shuffle: false))
        : (TrainingData.Loader(Splits.FinalTrain, ImageSize, Spec.Train, shuffle: true), TrainingData.Loader(Task.Test, ImageSize, Spec.Train, shuffle: false));

    /// <summary>A successive-halving rung's run of a point: the search run shortened to the rung's budget (fewer epochs,
    /// warm-up scaled alike, or one epoch over a prefix of the search images), marked with its rung in the training
    /// settings so it is never mistaken for a grid search's run.</summary>
    public RunSpec RungSpec(int point, Rung rung)
    {
        var (lr, wd, settings) = Points[point];
        var (train, images, name) = RungSetup(rung);
        var spec = RunSpecs.Trained(RunStage.Search, Task.Name, name, Splits.SearchValName, Spec.Method, settings,
                                    train with { Lr = lr, WeightDecay = wd, Seed = SearchSeed },
                                    RunSpecs.DataIdentity(images, Splits.SearchVal, Task.Directory), Spec.Backbone.ModelJson, Checkpoint, SweepId);
        var training = JsonNode.Parse(spec.TrainingJson)!.AsObject();
        training["rung"] = $"{rung.Index + 1}/{rung.Of}";
        return spec with { TrainingJson = training.ToJsonString() };
    }

    /// <summary>The rung's training settings, images and split name.</summary>
    (TrainOptions Train, ImageDataset Images, string Name) RungSetup(Rung rung)
    {
        var (epochs, count) = rung.Budget(Spec.Train.Epochs, Splits.SearchTrain.Count);
        var train = Spec.Train with
        {
            Epochs = epochs, WarmupEpochs = (int)Math.Round((double)Spec.Train.WarmupEpochs * epochs / Spec.Train.Epochs),
        };
        return count == Splits.SearchTrain.Count
            ? (train, Splits.SearchTrain, Splits.SearchTrainName)
            : (train, DatasetView.Prefix(Splits.SearchTrain, count), $"{Task.TrainName}[:{count}]");   // the search split is train800 or its prefix
    }

    public RunRequest RungRequest(int point, Rung rung, DataLoader train, DataLoader eval)
    {
        var (lr, wd, settings) = Points[point];
        return new RunRequest(RungSpec(point, rung), Spec.Backbone, settings, RungSetup(rung).Train with { Lr = lr, WeightDecay = wd, Seed = SearchSeed },
                              train, eval, Task.NumClasses, Task.Directory);
    }

    /// <summary>The (train, eval) loaders of a rung: the rung's images, the search's validation split.</summary>
    public (DataLoader Train, DataLoader Eval) RungLoaders(Rung rung)
    {
        var setup = RungSetup(rung);
        return (TrainingData.Loader(setup.Images, ImageSize, setup.Train, shuffle: true), TrainingData.Loader(Splits.SearchVal, ImageSize, Spec.Train, shuffle: false));
    }

    public string RungLabel(int point, Rung rung) => $"{Task.Name} {Spec.Method} search {rung} {point + 1}/{Points.Count}";

    /// <summary>How many images a stored run of this plan trained on (for a search's compute).</summary>
    public int TrainImages(RunSpec run) =>
        run.TrainSplit == Splits.SearchTrainName ? Splits.SearchTrain.Count
        : run.TrainSplit == Splits.FinalTrainName ? Splits.FinalTrain.Count
        : run.TrainSplit.StartsWith(Task.TrainName + "[:", StringComparison.Ordinal) ? int.Parse(run.TrainSplit[(Task.TrainName.Length + 2)..^1], System.Globalization.CultureInfo.InvariantCulture)
        : throw new ArgumentException($"not a split of this plan: {run.TrainSplit}", nameof(run));

    public int PointCount => Points.Count;

    (RunStage Stage, DataLoader Train, DataLoader Eval)? loaders;

    /// <summary>The run of a stage's point and seed; consecutive runs of one stage share its loaders (their images
    /// decoded once), which <see cref="Dispose"/> frees.</summary>
    public IRunJob Job(RunStage stage, int point, int seed)
    {
        if (loaders is not { } l || l.Stage != stage)
        {
            Dispose();
            var (train, eval) = Loaders(stage);
            loaders = l = (stage, train, eval);
        }
        return Request(stage, point, seed, l.Train, l.Eval);
    }

    public void Dispose()
    {
        if (loaders is not { } l) return;
        l.Train.Dispose();
        l.Eval.Dispose();
        loaders = null;
    }

    public string Label(RunStage stage, int point, int seed) => stage == RunStage.Search
        ? $"{Task.Name} {Spec.Method} search {point + 1}/{Points.Count}"
        : $"{Task.Name} {Spec.Method} final (seed {seed})";
}
