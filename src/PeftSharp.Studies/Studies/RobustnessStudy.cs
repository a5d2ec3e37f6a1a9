using System.Diagnostics;
using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;
using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Suite;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using PeftSharp.Reporting;
using static PeftSharp.Reporting.Charts;
using static PeftSharp.Reporting.Html;
using static PeftSharp.Studies.StudyReport;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Studies;

/// <summary>What the robustness study runs: the protocol that tunes each method (the benchmark's), the shifts, and
/// the methods swept with WiSE-FT. <see cref="BenchProfile.Methods"/> must hold "linear": its head is WiSE's α = 0.</summary>
public sealed record RobustnessProfile(BenchProfile Protocol, IReadOnlyList<string> Shifts, IReadOnlyList<string> WiseMethods)
{
    /// <summary>The α values swept: the study's eleven, {0, 0.1, …, 1}, unless a profile thins them to fit its time.</summary>
    public IReadOnlyList<double> Alphas { get; init; } = WiseFt.Alphas;
}

/// <summary>A method's accuracy on a task's own test split and on each shifted copy of it (top-1 %).</summary>
public sealed record ShiftedAccuracy(string Task, string Method, double InDist, IReadOnlyDictionary<string, double> Shifted, double Reproduced)
{
    public double ShiftedMean => Shifted.Values.Average();
}

/// <summary>One point of a WiSE-FT sweep.</summary>
public sealed record WisePoint(string Task, string Method, double Alpha, double InDist, IReadOnlyDictionary<string, double> Shifted)
{
    public double ShiftedMean => Shifted.Values.Average();
}

/// <summary>
/// The study's third finding: under distribution shift PEFT keeps robustness that full fine-tuning loses, and
/// WiSE-FT recovers it. Each method is tuned with the benchmark's protocol (finished runs reused); the chosen final
/// run's weights are its stored adapter, or the run trained again when it kept none (the report says how many test
/// predictions the rebuilt model reproduces), then scored on the natural tasks' test split and on
/// their shifted copies (<see cref="Shifts"/>), and swept along α ∈ {0, 0.1, …, 1} between the linear probe and
/// the fine-tuned model (<see cref="WiseFtModel"/>).
/// </summary>
public sealed class RobustnessStudy : IStudy
{
    public string Name => "robustness";
    public string Summary => "in-distribution vs shifted accuracy per method, effective robustness, WiSE-FT along α";

    public static RobustnessProfile Profile(string name) => name switch
    {
        "quick" => new(BenchProfile.Quick with
            {
                Tasks = new[] { "digits" }, Methods = new[] { "linear", "full", "lora", "ssf" },
                MethodLrs = BenchProfile.Default.MethodLrs,
            },
            new[] { "gaussian-noise-3", "invert" }, new[] { "full", "lora" })
        {
            Alphas = new[] { 0, 0.2, 0.4, 0.6, 0.8, 1.0 },   // every α is a pass over every test set: the quick profile's main cost
        },
        // Evaluation dominates (every α on every set is a pass over 1000 test images), so the default profile keeps
        // the two natural tasks the benchmark's default profile tunes and one severity per corruption.
        "default" => new(BenchProfile.Default with
            {
                Tasks = new[] { "digits", "photo-patches" }, Methods = new[] { "linear", "full", "lora", "ssf", "adapter-pfeiffer", "vpt-deep" },
            },
            new[] { "gaussian-noise-3", "blur-3", "contrast-3", "invert" }, new[] { "full", "lora", "ssf", "adapter-pfeiffer" }),
        "full" => new(BenchProfile.Full with
            {
                Tasks = Shifts.NaturalTasks,
                Methods = new[] { "linear", "full", "lora", "ssf", "adapter-pfeiffer", "adapter-houlsby", "repadapter", "fact-tk", "bitfit", "vpt-deep",
                                  "dtl", "adapter-plus", "hydra", "mona", "sct", "gps", "vqt", "spt-lora", "spt-adapter", "noah", "last" },
            },
            // SPT-LoRA merges, but its tuned tensors take their shapes from its pre-pass, so its state before training
            // and after do not line up for WiSE-FT's interpolation: not swept.
            Shifts.All.Select(s => s.Name).ToList(), new[] { "full", "lora", "ssf", "adapter-pfeiffer", "repadapter", "fact-tk", "bitfit", "dtl", "hydra", "gps" }),
        _ => throw new PeftSharpException($"unknown study profile '{name}'; expected one of {string.Join(", ", StudyCatalog.Profiles)}"),
    };

    public StudyOutput Run(StudyContext context, string profileName, StudyOverrides? overrides = null)
    {
        var watch = Stopwatch.StartNew();
        var profile = Profile(profileName);
        var protocol = (overrides ?? new StudyOverrides()).Apply(profile.Protocol);
        if (!protocol.Methods.Contains("linear")) throw new PeftSharpException("robustness: the methods must include linear (WiSE-FT starts from the linear probe)");
        foreach (var task in protocol.Tasks.Where(t => !Shifts.NaturalTasks.Contains(t)))
            throw new PeftSharpException($"robustness: '{task}' is not a natural task; the shifts apply to {string.Join(", ", Shifts.NaturalTasks)}");
        var wiseMethods = profile.WiseMethods.Where(protocol.Methods.Contains).ToList();
        var accuracies = new List<ShiftedAccuracy>();
        var wise = new List<WisePoint>();
        foreach (var task in protocol.Tasks)
        {
            var (a, w) = RunTask(context, protocol, profile.Shifts, wiseMethods, profile.Alphas, task);
            accuracies.AddRange(a);
            wise.AddRange(w);
        }
        var json = Header(Name, profileName, protocol.Description(), context, watch.Elapsed.TotalSeconds);
        json["alphas"] = Array(profile.Alphas.Select(a => (JsonNode)a));
        json["shifts"] = Array(profile.Shifts.Select(s => (JsonNode)new JsonObject { ["name"] = s, ["description"] = Shifts.Get(s).Description }));
        json["methods"] = Array(accuracies.Select(a => (JsonNode)new JsonObject
        {
            ["task"] = a.Task, ["method"] = a.Method, ["in_dist"] = Round(a.InDist),
            ["shifted"] = new JsonObject(a.Shifted.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Round(kv.Value)))),
            ["shifted_mean"] = Round(a.ShiftedMean), ["drop"] = Round(a.InDist - a.ShiftedMean),
            ["effective_robustness"] = EffectiveRobustness(accuracies, a) is double er ? Round(er) : null,
            ["reproduced"] = Round(a.Reproduced),
        }));
        json["wise"] = Array(wise.Select(p => (JsonNode)new JsonObject
        {
            ["task"] = p.Task, ["method"] = p.Method, ["alpha"] = p.Alpha, ["in_dist"] = Round(p.InDist), ["shifted_mean"] = Round(p.ShiftedMean),
            ["shifted"] = new JsonObject(p.Shifted.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Round(kv.Value)))),
        }));
        var notSwept = NotSwept(protocol.Methods, wiseMethods);
        json["not_swept"] = new JsonObject(notSwept.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        var claims = Claims(accuracies, wise);
        json["claims"] = Array(claims.Select(c => (JsonNode)c));
        var table = SummaryTable(accuracies, wise);
        string summary = table.ToMarkdown() + "\n" + string.Concat(claims.Select(c => $"- {c}\n"));
        return new StudyOutput(Name, json, Html(protocol, profile.Shifts, accuracies, wise, table, claims, notSwept, watch.Elapsed.TotalSeconds), summary);
    }

    /// <summary>The name of the task's own test split among the evaluation sets.</summary>
    const string InDist = "in_dist";

    (List<ShiftedAccuracy>, List<WisePoint>) RunTask(StudyContext context, BenchProfile protocol, IReadOnlyList<string> shifts,
                                                     IReadOnlyList<string> wiseMethods, IReadOnlyList<double> alphas, string task)
    {
        var source = context.Task(task);
        var setNames = new[] { InDist }.Concat(shifts).ToList();
        using var sets = new EvaluationSets(context, protocol, source.Directory, shifts);
        var runs = protocol.Methods.ToDictionary(m => m, m => context.Tuned(protocol, task, m));
        if (runs["linear"].Run is not RunRecord probeRun) throw new PeftSharpException($"robustness: the linear probe on {task} did not finish ({runs["linear"].Error})");
        // Each evaluation is stored as it finishes, so a rerun retrains a model only when one of its evaluations is missing.
        using var probe = new LazyRetrained(context, protocol, runs["linear"]);
        var accuracies = new List<ShiftedAccuracy>();
        var wise = new List<WisePoint>();
        foreach (var (method, run) in runs.Where(r => r.Value.Run != null))
        {
            using var own = method == "linear" ? null : new LazyRetrained(context, protocol, run);
            var model = own ?? probe;
            var plain = setNames.ToDictionary(set => set, set => Stored(context, EvaluationSpec(run.Run!, set, null, null), source.Directory,
                () => (Evaluator.Evaluate(model.Get().Peft.Vit, sets[set], context.Device), model.Get().Peft.CountTrainable())));
            var scores = plain.ToDictionary(kv => kv.Key, kv => kv.Value.Top1!.Value * 100);
            accuracies.Add(new ShiftedAccuracy(task, method, scores[InDist], Shifted(scores), Agreement(context, run.Run!, plain[InDist])));
            context.Log($"{task} {method}: {accuracies[^1].Reproduced:F1} % of the stored test predictions reproduced; in-dist {scores[InDist]:F2}, shifted mean {accuracies[^1].ShiftedMean:F2}");
            if (own == null || !wiseMethods.Contains(method)) continue;
            wise.AddRange(Sweep(context, sets, setNames, alphas, task, run.Run!, own, probeRun, probe, source.Directory));
        }
        return (accuracies, wise);
    }

    /// <summary>The WiSE-FT points of one method: each (α, set) read back when stored, else evaluated on the
    /// interpolated model (built, with its retraining, only when something is missing).</summary>
    static List<WisePoint> Sweep(StudyContext context, EvaluationSets sets, IReadOnlyList<string> setNames, IReadOnlyList<double> alphas, string task,
                                 RunRecord run, LazyRetrained model, RunRecord probeRun, LazyRetrained probe, string datasetPath)
    {
        WiseFtModel? sweep = null;
        Dictionary<string, Tensor>? probeHead = null;
        try
        {
            WiseFtModel At(double alpha)
            {
                if (sweep == null)
                {
                    context.Log($"{task} {run.Spec.Method}: WiSE-FT over {alphas.Count} values of α on {setNames.Count} test sets");
                    probeHead = WiseFt.Snapshot(probe.Get().Peft.Root).Where(kv => kv.Key.StartsWith("head.", StringComparison.Ordinal)).ToDictionary();
                    sweep = new WiseFtModel(model.Get().Peft, model.Get().Initial, probeHead);
                }
                sweep.SetAlpha(alpha);
                return sweep;
            }
            return alphas.Select(alpha =>
            {
                double? set = null;   // the α the model is set to, so that it is interpolated once per α
                var scores = setNames.ToDictionary(name => name, name => Stored(context, EvaluationSpec(run, name, alpha, probeRun), datasetPath, () =>
                {
                    var wiseModel = set == alpha ? sweep! : At(alpha);
                    set = alpha;
                    return (Evaluator.Evaluate(wiseModel.Model.Vit, sets[name], context.Device), wiseModel.Model.CountTrainable());
                }).Top1!.Value * 100);
                return new WisePoint(task, run.Spec.Method, alpha, scores[InDist], Shifted(scores));
            }).ToList();
        }
        finally
        {
            sweep?.Dispose();
            if (probeHead != null) WiseFt.Dispose(probeHead);
        }
    }

    /// <summary>
    /// The identity of one evaluation of a tuned final run's model, stored like a run: the run's own spec at stage
    /// single, evaluated on the task's test split or a shifted copy of it ("test@invert"), for WiSE-FT at α from the
    /// linear probe's run. Its key names the run evaluated, so it is never confused with another run's.
    /// </summary>
    public static RunSpec EvaluationSpec(RunRecord run, string set, double? alpha, RunRecord? probe)
    {
        var training = JsonNode.Parse(run.Spec.TrainingJson)!.AsObject();
        training["evaluation"] = new JsonObject
        {
            ["of"] = run.Key, ["wise_alpha"] = alpha, ["wise_start"] = alpha == null ? null : probe!.Key,
        };
        return run.Spec with
        {
            Stage = RunStage.Single, EvalSplit = set == InDist ? "test" : $"test@{set}", TrainingJson = training.ToJsonString(), SweepId = "robustness",
        };
    }

    /// <summary>The finished evaluation of <paramref name="spec"/>: read back when the database has it, else run now
    /// and stored with every prediction (under --no-train a missing one is an error naming it).</summary>
    static RunRecord Stored(StudyContext context, RunSpec spec, string datasetPath, Func<(EvaluationResult Result, long Trainable)> evaluate)
    {
        if (context.Db.TryGetFinished(spec.Key) is RunRecord done) return done;
        if (!context.Options.TrainMissing)
            throw new PeftSharpException($"{context.Db.Location}: no stored robustness evaluation of {spec.Dataset} {spec.Method} on {spec.EvalSplit}, and training missing runs is off");
        var (result, trainable) = evaluate();
        return RunExecutor.RecordEvaluation(context.Db, spec, result, datasetPath, trainable);
    }

    static Dictionary<string, double> Shifted(Dictionary<string, double> scores) => scores.Where(kv => kv.Key != InDist).ToDictionary();

    /// <summary>% of the test examples on which the retrained model (its stored in-distribution evaluation) predicts
    /// what the tuned run predicted.</summary>
    static double Agreement(StudyContext context, RunRecord run, RunRecord evaluation)
    {
        var stored = context.Db.Predictions(run.Id).ToDictionary(p => p.Index, p => p.Predicted);
        var again = context.Db.Predictions(evaluation.Id);
        int same = again.Count(p => stored.TryGetValue(p.Index, out int s) && s == p.Predicted);
        return 100.0 * same / Math.Max(1, again.Count);
    }

    /// <summary>Why the WiSE-FT sweep leaves a method out: for each tuned method not swept, and always for the Houlsby
    /// adapter, the study's adapter, which cannot be swept the way this study sweeps.</summary>
    public static IReadOnlyDictionary<string, string> NotSwept(IEnumerable<string> methods, IReadOnlyCollection<string> swept)
    {
        var notes = new Dictionary<string, string>();
        foreach (var method in methods.Append("adapter-houlsby").Distinct().Where(m => m != "linear" && !swept.Contains(m)))
            notes[method] = method switch
            {
                "adapter-houlsby" => "Not linear on the frozen path, so not mergeable: its bottleneck (down-projection, ReLU, up-projection) has no merged " +
                    "delta W₀ + α·ΔW. Nor does interpolating its own parameters start at the pretrained model: its up-projection is Xavier-initialised, " +
                    "not zero. The mergeable adapter is RepAdapter (swept in the full profile); the Pfeiffer adapter starts at zero output and is swept.",
                _ when method.StartsWith("vpt", StringComparison.Ordinal) => "Adds prompt tokens: not a delta on the frozen weights, and not the identity at init.",
                "adapter-plus" or "mona" => "Not linear on the frozen path, so not mergeable; nor is it the identity at init (its up-projection is " +
                    "trunc-normal, not zero), so interpolating its own parameters does not start at the pretrained model.",
                _ when TunerRegistry.Get(method).Mergeable => "Mergeable, so it could be swept as W₀ + α·ΔW; this profile leaves it out to fit its time.",
                _ => "Not mergeable; not swept by this profile.",
            };
        return notes;
    }

    /// <summary>Effective robustness (Taori et al., 2020): shifted accuracy above the linear trend of shifted against
    /// in-distribution accuracy fitted over all methods of the task (null with fewer than three methods).</summary>
    public static double? EffectiveRobustness(IReadOnlyList<ShiftedAccuracy> all, ShiftedAccuracy a)
    {
        var points = all.Where(x => x.Task == a.Task).Select(x => (X: x.InDist, Y: x.ShiftedMean)).ToList();
        if (points.Count < 3) return null;
        double mx = points.Average(p => p.X), my = points.Average(p => p.Y);
        double sxx = points.Sum(p => (p.X - mx) * (p.X - mx));
        if (sxx == 0) return null;
        double slope = points.Sum(p => (p.X - mx) * (p.Y - my)) / sxx;
        return a.ShiftedMean - (my + slope * (a.InDist - mx));
    }

    static ReportTable SummaryTable(IReadOnlyList<ShiftedAccuracy> accuracies, IReadOnlyList<WisePoint> wise)
    {
        var header = new[] { "task", "method", "in-dist", "shifted mean", "drop", "effective robustness", "best WiSE shifted mean (0 < α < 1)", "in-dist there" };
        var rows = accuracies.Select(a =>
        {
            var best = BestWise(wise, a.Task, a.Method);
            return (IReadOnlyList<string>)new[]
            {
                a.Task, a.Method, F(a.InDist), F(a.ShiftedMean), F(a.InDist - a.ShiftedMean), F(EffectiveRobustness(accuracies, a)),
                best == null ? "–" : $"{F(best.ShiftedMean)} ({best.Alpha:0.0})", best == null ? "–" : F(best.InDist),
            };
        });
        return new ReportTable(header, rows);
    }

    /// <summary>The interior α (0 &lt; α &lt; 1: a true interpolation, neither end) with the best shifted mean.</summary>
    static WisePoint? BestWise(IReadOnlyList<WisePoint> wise, string task, string method) =>
        wise.Where(p => p.Task == task && p.Method == method && p.Alpha > 0 && p.Alpha < 1)
            .OrderByDescending(p => p.ShiftedMean).ThenBy(p => p.Alpha).FirstOrDefault();

    /// <summary>The study's claims, checked: full fine-tuning loses more under shift than PEFT; WiSE-FT recovers it.</summary>
    static IReadOnlyList<string> Claims(IReadOnlyList<ShiftedAccuracy> accuracies, IReadOnlyList<WisePoint> wise)
    {
        var claims = new List<string>();
        var tasks = accuracies.Select(a => a.Task).Distinct().ToList();
        var fullDrops = accuracies.Where(a => a.Method == "full").ToList();
        var peft = accuracies.Where(a => TunerRegistry.IsPeft(a.Method)).ToList();
        if (fullDrops.Count > 0 && peft.Count > 0)
        {
            int worse = fullDrops.Count(f => peft.Where(p => p.Task == f.Task).All(p => f.InDist - f.ShiftedMean > p.InDist - p.ShiftedMean));
            double fullDrop = fullDrops.Average(f => f.InDist - f.ShiftedMean), peftDrop = peft.Average(p => p.InDist - p.ShiftedMean);
            claims.Add($"Full fine-tuning drops {fullDrop:F2} points under shift on average, the PEFT methods {peftDrop:F2}; full fine-tuning drops the most on {worse} of {fullDrops.Count} tasks. The study: PEFT keeps robustness that full fine-tuning loses. {(fullDrop > peftDrop ? "Agrees." : "Disagrees here.")}");
        }
        var gains = wise.GroupBy(p => (p.Task, p.Method)).Select(g =>
        {
            var tuned = g.Single(p => p.Alpha == 1);
            var probe = g.Single(p => p.Alpha == 0);
            var best = BestWise(wise, g.Key.Task, g.Key.Method);
            return (g.Key.Method, Gain: best == null ? 0 : best.ShiftedMean - tuned.ShiftedMean,
                    BeatsBothEnds: best != null && best.ShiftedMean > Math.Max(tuned.ShiftedMean, probe.ShiftedMean), Alpha: best?.Alpha ?? 1);
        }).ToList();
        if (gains.Count > 0)
        {
            int helped = gains.Count(g => g.Gain > 0), both = gains.Count(g => g.BeatsBothEnds);
            claims.Add($"WiSE-FT (the best α strictly between 0 and 1) raises the shifted mean above the fine-tuned model's in {helped} of {gains.Count} (task, method) sweeps, and above both ends (linear probe and fine-tuned) in {both}; mean gain over the fine-tuned model {gains.Average(g => g.Gain):+0.00;-0.00} points (by method: {string.Join(", ", gains.GroupBy(g => g.Method).Select(m => $"{m.Key} {m.Average(g => g.Gain):+0.00;-0.00} at α ≈ {m.Average(g => g.Alpha):0.0}"))}). The study: WiSE-FT recovers robustness, for full fine-tuning and PEFT alike. {(helped * 2 > gains.Count ? "Agrees." : "Disagrees here.")}");
        }
        return claims;
    }

    string Html(BenchProfile protocol, IReadOnlyList<string> shifts, IReadOnlyList<ShiftedAccuracy> accuracies, IReadOnlyList<WisePoint> wise,
                ReportTable summary, IReadOnlyList<string> claims, IReadOnlyDictionary<string, string> notSwept, double seconds)
    {
        var sections = new List<string>
        {
            Section("Summary", summary.ToHtml(), "Test top-1 %. Shifted mean: the mean over the shifts below. Effective robustness: shifted mean above the linear fit of shifted against in-distribution accuracy over the task's methods."),
            Section("Claims checked", "<ul>" + string.Concat(claims.Select(c => $"<li>{Esc(c)}</li>")) + "</ul>"),
        };
        foreach (var task in accuracies.Select(a => a.Task).Distinct())
        {
            var series = wise.Where(p => p.Task == task).GroupBy(p => p.Method)
                .Select(g => new ChartSeries(g.Key, g.Select(p => (p.InDist, p.ShiftedMean)).ToList())).ToList();
            var alphaSeries = wise.Where(p => p.Task == task).GroupBy(p => p.Method)
                .Select(g => new ChartSeries(g.Key, g.Select(p => (p.Alpha, p.ShiftedMean)).ToList())).ToList();
            var rows = accuracies.Where(a => a.Task == task).Select(a => (IReadOnlyList<string>)new[] { a.Method, F(a.InDist) }
                .Concat(shifts.Select(s => F(a.Shifted[s]))).Append(F(a.Reproduced, "F1")).ToList());
            sections.Add(Section($"{task}: WiSE-FT", LineChart(alphaSeries, "α (0: linear probe, 1: fine-tuned)", "shifted mean top-1 %", logX: false)
                                                     + LineChart(series, "in-distribution top-1 %", "shifted mean top-1 %", logX: false),
                                 "Each line runs from α = 0 (the linear probe) to α = 1 (the fine-tuned model)."));
            sections.Add(Section($"{task}: every shift", HtmlTable(new[] { "method", "in-dist" }.Concat(shifts).Append("retrained = stored, % of test").ToList(), rows)));
        }
        sections.Add(Section("Not swept with WiSE-FT", HtmlTable(new[] { "method", "why" }, notSwept.Select(kv => (IReadOnlyList<string>)new[] { kv.Key, kv.Value }))));
        sections.Add(Section("Shifts", HtmlTable(new[] { "shift", "what" }, shifts.Select(s => (IReadOnlyList<string>)new[] { s, Shifts.Get(s).Description }))));
        return Page("PeftSharp study: robustness", $"Profile {protocol.Name}: {protocol.Description()}. {seconds / 60:F1} min.", sections);
    }

    /// <summary>A tuned run's model, built on first use only (a study whose evaluations are all stored builds none).</summary>
    sealed class LazyRetrained(StudyContext context, BenchProfile protocol, StudyRun run) : IDisposable
    {
        Retrained? model;

        public Retrained Get()
        {
            if (model != null) return model;
            model = Retrained.Of(context, protocol, run);
            context.Log($"{run.Task} {run.Method}: {(model.FromStore ? "the tuned run's adapter read from the results store" : "the tuned run retrained from its record (its weights were not kept)")}, to evaluate it");
            return model;
        }

        public void Dispose() => model?.Dispose();
    }

    /// <summary>The task's test split and its shifted copies, materialised and loaded on first use.</summary>
    sealed class EvaluationSets(StudyContext context, BenchProfile protocol, string taskDirectory, IReadOnlyList<string> shifts) : IDisposable
    {
        readonly Dictionary<string, DataLoader> loaders = new();

        public DataLoader this[string set]
        {
            get
            {
                if (loaders.TryGetValue(set, out var loader)) return loader;
                string directory = taskDirectory;
                if (set != InDist)
                {
                    if (!shifts.Contains(set)) throw new ArgumentException($"not an evaluation set of this study: {set}", nameof(set));
                    var shifted = Shifts.Materialize(taskDirectory, set, Path.Combine(context.Options.OutDir, "suite"));
                    if (!shifted.Reused) context.Log($"wrote the shifted task {shifted.Directory}");
                    directory = shifted.Directory;
                }
                var train = protocol.Training(context.Normalization);
                return loaders[set] = TrainingData.Loader(VtabTask.Open(directory).Test, context.Backbone.ImageSize(), train, shuffle: false);
            }
        }

        public void Dispose()
        {
            foreach (var loader in loaders.Values) loader.Dispose();
        }
    }

    /// <summary>A finished run's model with the snapshot of its weights before training. The run is rebuilt from its
    /// plan (the same request, so the same initial weights: <see cref="TrainedRun.Prepare"/>); its trained tensors are
    /// the adapter the results store kept, or, when the run kept none (full fine-tuning by default, runs stored before
    /// artefacts), it is trained again the one way runs train (deterministic on the CPU).</summary>
    sealed class Retrained : IDisposable
    {
        Retrained(PeftModel peft, Dictionary<string, Tensor> initial, bool fromStore)
        {
            Peft = peft;
            Initial = initial;
            FromStore = fromStore;
        }

        public PeftModel Peft { get; }
        public Dictionary<string, Tensor> Initial { get; }
        /// <summary>True when the trained tensors came from the store's adapter, false when retrained.</summary>
        public bool FromStore { get; }

        public static Retrained Of(StudyContext context, BenchProfile protocol, StudyRun run)
        {
            var record = run.Run!;
            var plan = context.Plan(protocol, run.Task, run.Method);
            int point = plan.PointOf(record.Spec)
                ?? throw new PeftSharpException($"{context.Db.Location}: run {record.Id} ({run.Task} {run.Method}) is not one of the profile's runs");
            var (train, eval) = plan.Loaders(RunStage.Final);
            using (train)
            using (eval)
            {
                var request = plan.Request(RunStage.Final, point, record.Spec.Seed, train, eval);
                var (model, peft) = TrainedRun.Prepare(request.Training, context.Device);
                var initial = WiseFt.Snapshot(model);
                bool fromStore = LoadStored(context, record, peft);
                if (!fromStore) new Trainer(peft, request.Train, context.Device).Fit(train);
                model.eval();
                return new Retrained(peft, initial, fromStore);
            }
        }

        static bool LoadStored(StudyContext context, RunRecord record, PeftModel peft)
        {
            string folder = Path.Combine(Path.GetTempPath(), $"peftsharp-robustness-{Environment.ProcessId}-{record.Id}-{Guid.NewGuid():N}");
            try
            {
                if (!RunArtifacts.ExportAdapter(context.Db, record.Id, folder)) return false;
                AdapterFiles.LoadInto(peft, folder);
                return true;
            }
            finally
            {
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            }
        }

        public void Dispose()
        {
            WiseFt.Dispose(Initial);
            Peft.Root.Dispose();
        }
    }
}
