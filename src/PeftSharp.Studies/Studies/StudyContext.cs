using PeftSharp.Benchmarks;
using PeftSharp.Results;
using PeftSharp.Suite;
using PeftSharp.Training;
using TorchSharp;

namespace PeftSharp.Studies;

/// <summary>Where a study reads and writes: its output folder, the results database (default OUT/results.db), the
/// backbone, and whether runs missing from the database may be trained.</summary>
public sealed record StudyOptions
{
    public required string OutDir { get; init; }
    public string? DbPath { get; init; }
    public required string Checkpoint { get; init; }
    /// <summary>False: every run must already be finished in the database (a missing one is an error naming it).</summary>
    public bool TrainMissing { get; init; } = true;
    /// <summary>A study's own data outside the suite (many-shot: the Fashion-MNIST IDX files); null for its default.</summary>
    public string? DataDir { get; init; }
    /// <summary>Precision of every run the study trains (recorded in each run's key when not float32).</summary>
    public Precision Precision { get; init; } = Precision.Float32;
    public string DatabasePath => DbPath ?? Path.Combine(OutDir, "results.db");
}

/// <summary>The run of one (task, method, settings) cell of a study: the final (test) run, or why there is none.</summary>
public sealed record StudyRun(string Task, string Method, RunRecord? Run, string? Error)
{
    public double? Top1 => Run?.Top1 * 100;
}

/// <summary>
/// What every study shares: the mini-VTAB tasks (materialised under OUT/suite), the results database, and the study
/// protocol, through which a study obtains its runs: a run already finished in the database is read back, a missing
/// one is trained (and stored), so a study killed at any point resumes without redoing a finished run.
/// </summary>
public sealed class StudyContext : IDisposable
{
    readonly Dictionary<string, MaterializedTask> tasks = new();
    readonly Action<string>? log;

    public StudyContext(StudyOptions options, torch.Device device, IRunObserver? observer = null, Action<string>? log = null)
    {
        if (!File.Exists(options.Checkpoint))
            throw new PeftSharpException("checkpoint", $"{options.Checkpoint}: backbone checkpoint not found (pretrain one, or name another checkpoint)");
        if (!options.TrainMissing && !File.Exists(options.DatabasePath))
            throw new PeftSharpException($"{options.DatabasePath}: results database not found, and training missing runs is off");
        Options = options;
        this.log = log;
        WritableFolder.Require(options.OutDir, "the study's output folder");
        Db = ResultsDb.Open(options.DatabasePath);
        Device = device;
        Executor = new RunExecutor(Db, device, observer, Path.Combine(options.OutDir, "checkpoints")) { TrainMissing = options.TrainMissing };
        Protocol = new StudyProtocol(Executor);
        Backbone = new BackboneSpec(null, null, options.Checkpoint);
        Normalization = Checkpoints.ModelCheckpoints.ReadNormalization(options.Checkpoint) ?? "none";
    }

    public StudyOptions Options { get; }
    public ResultsDb Db { get; }
    public torch.Device Device { get; }
    public StudyProtocol Protocol { get; }
    /// <summary>Runs one run against the database (reused when finished), for studies whose runs are not tune requests.</summary>
    public RunExecutor Executor { get; }
    public BackboneSpec Backbone { get; }
    /// <summary>The input normalisation the backbone was pretrained with (its checkpoint says), used for every run.</summary>
    public string Normalization { get; }

    /// <summary>A profile's training settings for this study: the backbone's normalisation, the study's precision.</summary>
    public TrainOptions Training(BenchProfile profile) => profile.Training(Normalization) with { Precision = Options.Precision };

    /// <summary>Reports a step that is not a run (those the observer hears).</summary>
    public void Log(string message) => log?.Invoke(message);

    /// <summary>The task's VTAB-layout folder, materialised under OUT/suite on first use.</summary>
    public MaterializedTask Task(string name)
    {
        if (tasks.TryGetValue(name, out var task)) return task;
        task = MiniVtab.Materialize(Path.Combine(Options.OutDir, "suite"), taskNames: new[] { name })[0];
        tasks[name] = task;
        return task;
    }

    /// <summary>
    /// The tuned final run of <paramref name="method"/> on <paramref name="task"/> under <paramref name="profile"/>'s
    /// protocol (the same requests as the benchmark's, so the benchmark's finished runs are reused). Fixed
    /// <paramref name="settings"/> replace the method's searched grid (a capacity cell fixes its knob).
    /// </summary>
    public StudyRun Tuned(BenchProfile profile, string task, string method, IReadOnlyDictionary<string, string>? settings = null)
    {
        var result = Protocol.Tune(CellSpec(profile, task, method, settings));
        var final = result.Final.FirstOrDefault(r => r.Status == RunStatus.Finished);
        string? error = final != null ? null
            : result.Final.FirstOrDefault(r => r.Error != null)?.Error ?? result.Search.FirstOrDefault(r => r.Error != null)?.Error ?? "no run finished";
        return new StudyRun(task, method, final, error);
    }

    /// <summary>The runs <see cref="Tuned"/> stands for (their identities and requests).</summary>
    public TunePlan Plan(BenchProfile profile, string task, string method, IReadOnlyDictionary<string, string>? settings = null) =>
        TunePlan.Create(CellSpec(profile, task, method, settings));

    TuneSpec CellSpec(BenchProfile profile, string task, string method, IReadOnlyDictionary<string, string>? settings)
    {
        var spec = profile.CellSpec(Task(task).Directory, method, Backbone, Training(profile));
        return settings == null ? spec : spec with { Settings = settings, MethodGrid = new Dictionary<string, string[]>() };
    }

    /// <summary>A finished run's test logits in example order, and the labels.</summary>
    public (MemberLogits Logits, int[] Labels) Predictions(StudyRun run)
    {
        if (run.Run == null) throw new PeftSharpException($"{run.Task} {run.Method}: no finished run ({run.Error})");
        var rows = Db.Predictions(run.Run.Id).OrderBy(p => p.Index).ToList();
        return (new MemberLogits(run.Method, rows.Select(p => p.Logits).ToArray()), rows.Select(p => p.Label).ToArray());
    }

    public void Dispose() => Db.Dispose();
}
