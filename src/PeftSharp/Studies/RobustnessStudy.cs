using System.Diagnostics;
using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;
using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Suite;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
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
/// run is retrained deterministically to get its weights (the database keeps logits, not weights; the report says
/// how many test predictions the retrained model reproduces), then scored on the natural tasks' test split and on
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
                Methods = new[] { "linear", "full", "lora", "ssf", "adapter-pfeiffer", "adapter-houlsby", "fact-tk", "bitfit", "vpt-deep" },
            },
            Shifts.All.Select(s => s.Name).ToList(), new[] { "full", "lora", "ssf", "adapter-pfeiffer", "fact-tk", "bitfit" }),
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
        var claims = Claims(accuracies, wise);
        json["claims"] = Array(claims.Select(c => (JsonNode)c));
        string summary = SummaryTable(accuracies, wise) + "\n" + string.Concat(claims.Select(c => $"- {c}\n"));
        return new StudyOutput(Name, json, Html(protocol, profile.Shifts, accuracies, wise, summary, claims, watch.Elapsed.TotalSeconds), summary);
    }

    (List<ShiftedAccuracy>, List<WisePoint>) RunTask(StudyContext context, BenchProfile protocol, IReadOnlyList<string> shifts,
                                                     IReadOnlyList<string> wiseMethods, IReadOnlyList<double> alphas, string task)
    {
        var source = context.Task(task);
        var train = protocol.Training(context.Normalization);
        int size = context.Backbone.ImageSize();
        var sets = new Dictionary<string, DataLoader> { ["in_dist"] = StudyProtocol.Loader(VtabTask.Open(source.Directory).Test, size, train, shuffle: false) };
        foreach (var shift in shifts)
        {
            var shifted = Shifts.Materialize(source.Directory, shift, Path.Combine(context.Options.OutDir, "suite"));
            if (!shifted.Reused) context.Log($"wrote the shifted task {shifted.Directory}");
            sets[shift] = StudyProtocol.Loader(VtabTask.Open(shifted.Directory).Test, size, train, shuffle: false);
        }
        try
        {
            var runs = protocol.Methods.ToDictionary(m => m, m => context.Tuned(protocol, task, m));
            if (runs["linear"].Run == null) throw new PeftSharpException($"robustness: the linear probe on {task} did not finish ({runs["linear"].Error})");
            using var probe = Retrained.Of(context, protocol, runs["linear"]);
            var probeHead = WiseFt.Snapshot(probe.Peft.Root).Where(kv => kv.Key.StartsWith("head.", StringComparison.Ordinal)).ToDictionary();
            var accuracies = new List<ShiftedAccuracy>();
            var wise = new List<WisePoint>();
            try
            {
                foreach (var (method, run) in runs.Where(r => r.Value.Run != null))
                {
                    using var model = method == "linear" ? null : Retrained.Of(context, protocol, run);
                    var tuned = model ?? probe;
                    var scores = Score(tuned.Peft.Vit, sets, context.Device, out var test);
                    accuracies.Add(new ShiftedAccuracy(task, method, scores["in_dist"], Shifted(scores), Agreement(context, run, test)));
                    context.Log($"{task} {method}: retrained, {accuracies[^1].Reproduced:F1} % of the stored test predictions reproduced; in-dist {scores["in_dist"]:F2}, shifted mean {accuracies[^1].ShiftedMean:F2}");
                    if (model == null || !wiseMethods.Contains(method)) continue;
                    context.Log($"{task} {method}: WiSE-FT over {alphas.Count} values of α on {sets.Count} test sets");
                    using var sweep = new WiseFtModel(model.Peft, model.Initial, probeHead);
                    foreach (double alpha in alphas)
                    {
                        sweep.SetAlpha(alpha);
                        var s = Score(model.Peft.Vit, sets, context.Device, out _);
                        wise.Add(new WisePoint(task, method, alpha, s["in_dist"], Shifted(s)));
                    }
                }
            }
            finally { WiseFt.Dispose(probeHead); }
            return (accuracies, wise);
        }
        finally
        {
            foreach (var loader in sets.Values) loader.Dispose();
        }
    }

    static Dictionary<string, double> Shifted(Dictionary<string, double> scores) => scores.Where(kv => kv.Key != "in_dist").ToDictionary();

    /// <summary>Top-1 (%) on every evaluation set; <paramref name="test"/> is the in-distribution evaluation.</summary>
    static Dictionary<string, double> Score(Models.VisionTransformer model, IReadOnlyDictionary<string, DataLoader> sets, Device device, out EvaluationResult test)
    {
        var scores = new Dictionary<string, double>();
        test = null!;
        foreach (var (name, loader) in sets)
        {
            var result = Evaluator.Evaluate(model, loader, device);
            if (name == "in_dist") test = result;
            scores[name] = result.Metrics.Top1;
        }
        return scores;
    }

    /// <summary>% of the test examples on which the retrained model predicts what the stored run predicted.</summary>
    static double Agreement(StudyContext context, StudyRun run, EvaluationResult test)
    {
        var stored = context.Db.Predictions(run.Run!.Id).ToDictionary(p => p.Index, p => p.Predicted);
        int same = Enumerable.Range(0, test.Labels.Length).Count(i => stored.TryGetValue(test.Indices[i], out int p) && p == test.Predicted(i));
        return 100.0 * same / Math.Max(1, test.Labels.Length);
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

    static string SummaryTable(IReadOnlyList<ShiftedAccuracy> accuracies, IReadOnlyList<WisePoint> wise)
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
        return MarkdownTable(header, rows);
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
        var peft = accuracies.Where(a => a.Method is not ("full" or "linear")).ToList();
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
                string summary, IReadOnlyList<string> claims, double seconds)
    {
        var sections = new List<string>
        {
            Section("Summary", MarkdownToHtml(summary), "Test top-1 %. Shifted mean: the mean over the shifts below. Effective robustness: shifted mean above the linear fit of shifted against in-distribution accuracy over the task's methods."),
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
        sections.Add(Section("Shifts", HtmlTable(new[] { "shift", "what" }, shifts.Select(s => (IReadOnlyList<string>)new[] { s, Shifts.Get(s).Description }))));
        return Page("PeftSharp study: robustness", $"Profile {protocol.Name}: {protocol.Description()}. {seconds / 60:F1} min.", sections);
    }

    /// <summary>A finished run's model, retrained deterministically from its record (same seed, data order and
    /// settings, so the same weights on the CPU), with the snapshot of its weights before training.</summary>
    sealed class Retrained : IDisposable
    {
        Retrained(PeftModel peft, Dictionary<string, Tensor> initial)
        {
            Peft = peft;
            Initial = initial;
        }

        public PeftModel Peft { get; }
        public Dictionary<string, Tensor> Initial { get; }

        public static Retrained Of(StudyContext context, BenchProfile protocol, StudyRun run)
        {
            var spec = run.Run!.Spec;
            var task = VtabTask.Open(context.Task(run.Task).Directory);
            var baseTraining = protocol.Training(context.Normalization);
            var train = baseTraining with { Lr = spec.Lr, WeightDecay = spec.WeightDecay, Seed = spec.Seed };
            var splits = ProtocolSplits.Of(task, protocol.TrainImages, protocol.ValImages);
            // The protocol shuffles with the base options' seed for every run seed; so does this.
            using var loader = StudyProtocol.Loader(splits.FinalTrain, context.Backbone.ImageSize(), baseTraining, shuffle: true);
            // The same steps in the same order as RunExecutor, so the random draws (init, dropout, drop-path) match.
            manual_seed(spec.Seed);
            var model = context.Backbone.Load(task.NumClasses, train.DropPath, out _);
            model.to(context.Device);
            var peft = PeftModel.Create(model, spec.Method, SettingsOf(spec));
            var initial = WiseFt.Snapshot(model);
            new Trainer(peft, train, context.Device).Fit(loader);
            return new Retrained(peft, initial);
        }

        /// <summary>The run's resolved hyperparameters as --set values.</summary>
        static Dictionary<string, string> SettingsOf(Results.RunSpec spec) =>
            JsonNode.Parse(spec.HyperJson)?[spec.Method]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "")
            ?? new Dictionary<string, string>();

        public void Dispose()
        {
            WiseFt.Dispose(Initial);
            Peft.Root.Dispose();
        }
    }
}
