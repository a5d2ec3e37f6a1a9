using System.Diagnostics;
using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;
using PeftSharp.Reporting;
using static PeftSharp.Reporting.Charts;
using static PeftSharp.Reporting.Html;
using static PeftSharp.Studies.StudyReport;

namespace PeftSharp.Studies;

/// <summary>
/// The study's second finding: tuned PEFT methods make different mistakes and are confident about different
/// examples, so ensembles of them beat the best single method. Per task it tunes each method with the benchmark's
/// protocol (the benchmark's finished runs are reused), reads every test example's stored logits and reports
/// pairwise overlap, top-k confident overlap and the ensembles of 2, 3 and all methods.
/// </summary>
public sealed class EnsembleStudy : IStudy
{
    /// <summary>The top-k confident sets hold this fraction of a task's test examples.</summary>
    public const double ConfidentFraction = 0.2;

    public string Name => "ensembles";
    public string Summary => "pairwise prediction overlap, top-k confident overlap, logit/probability ensembles vs the best single method";

    /// <summary>The benchmark's profiles with the methods the study ensembles, so the benchmark's runs are shared:
    /// quick, bench --quick's tasks (LoRA, SSF, an adapter and VPT-shallow); default, bench's default tasks and
    /// protocol with six PEFT methods; full, bench --full with every PEFT method.</summary>
    public static BenchProfile Profile(string name) => name switch
    {
        "quick" => BenchProfile.Quick with { Methods = new[] { "lora", "ssf", "adapter-houlsby", "vpt-shallow" } },
        "default" => BenchProfile.Default with { Methods = new[] { "lora", "ssf", "adapter-houlsby", "fact-tk", "vpt-deep", "bitfit" } },
        "full" => BenchProfile.Full with
        {
            Methods = Tuners.TunerRegistry.ImageMethods.Where(m => m.IsPeft).Select(m => m.Id).ToList(),   // every PEFT method
        },
        _ => throw new PeftSharpException($"unknown study profile '{name}'; expected one of {string.Join(", ", StudyCatalog.Profiles)}"),
    };

    public StudyOutput Run(StudyContext context, string profileName, StudyOverrides? overrides = null)
    {
        var watch = Stopwatch.StartNew();
        var profile = (overrides ?? new StudyOverrides()).Apply(Profile(profileName));
        var results = profile.Tasks.Select(t => Analyse(context, profile, t)).ToList();
        if (results.All(r => r.Analysis == null))
            throw new PeftSharpException($"ensembles: fewer than two methods finished on every task ({string.Join("; ", results.SelectMany(r => r.Failed).Select(f => $"{f.Task} {f.Method}: {f.Error}").Take(3))})");
        var json = Header(Name, profile.Name, profile.Description(), context, watch.Elapsed.TotalSeconds);
        json["methods"] = Array(profile.Methods.Select(m => (JsonNode)m));
        json["confident_fraction"] = ConfidentFraction;
        json["tasks"] = Array(results.Select(TaskJson));
        json["claims"] = Array(Claims(results).Select(c => (JsonNode)c));
        var table = SummaryTable(results);
        string summary = table.ToMarkdown() + "\n" + string.Concat(Claims(results).Select(c => $"- {c}\n"));
        return new StudyOutput(Name, json, Html(profile, results, table, watch.Elapsed.TotalSeconds), summary);
    }

    /// <summary>One task's members (finished runs), the methods that failed, and the analysis (null: under two members).</summary>
    sealed record TaskResult(string Task, IReadOnlyList<StudyRun> Members, IReadOnlyList<StudyRun> Failed, EnsembleAnalysis? Analysis, int Examples);

    static TaskResult Analyse(StudyContext context, BenchProfile profile, string task)
    {
        var runs = profile.Methods.Select(m => context.Tuned(profile, task, m)).ToList();
        var members = runs.Where(r => r.Run != null).ToList();
        var failed = runs.Where(r => r.Run == null).ToList();
        if (members.Count < 2) return new TaskResult(task, members, failed, null, 0);
        var predictions = members.Select(context.Predictions).ToList();
        var labels = predictions[0].Labels;
        if (predictions.Any(p => !p.Labels.SequenceEqual(labels)))
            throw new PeftSharpException($"ensembles: the runs on {task} were not evaluated on the same test examples");
        var analysis = Ensemble.Evaluate(predictions.Select(p => p.Logits).ToList(), labels, (int)Math.Round(ConfidentFraction * labels.Length));
        return new TaskResult(task, members, failed, analysis, labels.Length);
    }

    static JsonNode TaskJson(TaskResult r)
    {
        var o = new JsonObject
        {
            ["task"] = r.Task, ["examples"] = r.Examples,
            ["failed"] = Array(r.Failed.Select(f => (JsonNode)new JsonObject { ["method"] = f.Method, ["error"] = f.Error })),
        };
        if (r.Analysis is not EnsembleAnalysis a) return o;
        o["methods"] = Array(r.Members.Select(m => (JsonNode)new JsonObject
        {
            ["method"] = m.Method, ["top1"] = Round(m.Top1!.Value), ["run_id"] = m.Run!.Id, ["trainable_params"] = m.Run.Outcome!.TrainableParams,
        }));
        var best = a.BestSingle;
        o["best_single"] = new JsonObject { ["method"] = best.Method, ["top1"] = Round(best.Top1) };
        o["pairs"] = Array(a.Pairs.Select(p => (JsonNode)new JsonObject
        {
            ["a"] = p.A, ["b"] = p.B, ["both_right"] = Round(p.BothRight), ["both_wrong"] = Round(p.BothWrong),
            ["disagreement"] = Round(p.Disagreement), ["different_predictions"] = Round(p.DifferentPredictions),
        }));
        o["confident"] = new JsonObject
        {
            ["k"] = a.ConfidentK, ["shared_by_all"] = a.ConfidentSharedByAll,
            ["pairs"] = Array(a.Confident.Select(c => (JsonNode)new JsonObject { ["a"] = c.A, ["b"] = c.B, ["shared"] = c.Shared, ["jaccard"] = Round(c.Jaccard) })),
        };
        o["ensembles"] = Array(a.Ensembles.Select(e => (JsonNode)new JsonObject
        {
            ["members"] = Array(e.Members.Select(m => (JsonNode)m)), ["rule"] = RuleName(e.Rule), ["top1"] = Round(e.Top1),
            ["gain_over_best_single"] = Round(e.Top1 - best.Top1),
        }));
        return o;
    }

    static string RuleName(EnsembleRule rule) => rule == EnsembleRule.Logits ? "logits" : "probabilities";

    /// <summary>The ensemble sizes reported: 2, 3 and all members (all only when more than three).</summary>
    static IEnumerable<(string Label, int Size)> Sizes(EnsembleAnalysis a)
    {
        int n = a.Singles.Count;
        yield return ("best pair", 2);
        if (n >= 3) yield return ("best triple", 3);
        if (n > 3) yield return ($"all {n}", n);
    }

    static ReportTable SummaryTable(IReadOnlyList<TaskResult> results)
    {
        var header = new[] { "task", "best single", "best pair (logits / probs)", "best triple", "all (logits / probs)", "mean disagreement %", "mean both wrong %", "top-k shared by all" };
        var rows = results.Select(r => r.Analysis is not EnsembleAnalysis a
            ? (IReadOnlyList<string>)new[] { r.Task, "under two methods finished", "", "", "", "", "", "" }
            : new[]
            {
                r.Task, $"{a.BestSingle.Method} {F(a.BestSingle.Top1)}", Both(a, 2), Both(a, 3), Both(a, a.Singles.Count),
                F(a.Pairs.Average(p => p.Disagreement), "F1"), F(a.Pairs.Average(p => p.BothWrong), "F1"), $"{a.ConfidentSharedByAll} of {a.ConfidentK}",
            });
        return new ReportTable(header, rows);

        static string Both(EnsembleAnalysis a, int size) =>
            a.Best(size, EnsembleRule.Logits) is EnsembleScore l && a.Best(size, EnsembleRule.Probabilities) is EnsembleScore p ? $"{F(l.Top1)} / {F(p.Top1)}" : "–";
    }

    /// <summary>The study's claim, checked per task: an ensemble beats the best single method.</summary>
    static IReadOnlyList<string> Claims(IReadOnlyList<TaskResult> results)
    {
        var done = results.Where(r => r.Analysis != null).ToList();
        if (done.Count == 0) return System.Array.Empty<string>();
        int n = done.Count;
        int allBeat = done.Count(r => r.Analysis!.Best(r.Analysis.Singles.Count, EnsembleRule.Logits)!.Top1 > r.Analysis.BestSingle.Top1);
        int anyBeat = done.Count(r => r.Analysis!.Ensembles.Any(e => e.Top1 > r.Analysis.BestSingle.Top1));
        double meanGain = done.Average(r => r.Analysis!.Best(r.Analysis.Singles.Count, EnsembleRule.Logits)!.Top1 - r.Analysis.BestSingle.Top1);
        double disagreement = done.Average(r => r.Analysis!.Pairs.Average(p => p.Disagreement));
        return new[]
        {
            $"The logit-averaged ensemble of all methods beats the best single method on {allBeat} of {n} tasks (mean gain {meanGain:+0.00;-0.00} points); some ensemble of 2, 3 or all beats it on {anyBeat} of {n}. The study: ensembling tuned PEFT methods helps. {(allBeat == n ? "Agrees." : allBeat * 2 >= n ? "Mostly agrees." : "Disagrees here.")}",
            $"Methods make different mistakes: on average {disagreement:F1} % of test examples are right for exactly one of a pair of methods.",
        };
    }

    string Html(BenchProfile profile, IReadOnlyList<TaskResult> results, ReportTable summary, double seconds)
    {
        var sections = new List<string>
        {
            Section("Summary", summary.ToHtml(),
                    "Test top-1 %. An ensemble averages its members' logits or softmax probabilities and predicts the argmax."),
            Section("Claims checked", "<ul>" + string.Concat(Claims(results).Select(c => $"<li>{Esc(c)}</li>")) + "</ul>"),
        };
        foreach (var r in results.Where(r => r.Analysis != null)) sections.Add(TaskHtml(r));
        foreach (var r in results.Where(r => r.Failed.Count > 0))
            sections.Add(Section($"{r.Task}: failed runs", HtmlTable(new[] { "method", "error" }, r.Failed.Select(f => (IReadOnlyList<string>)new[] { f.Method, f.Error ?? "" }))));
        return Page("PeftSharp study: ensembles", $"Profile {profile.Name}: {profile.Description()}. {seconds / 60:F1} min.", sections);
    }

    static string TaskHtml(TaskResult r)
    {
        var a = r.Analysis!;
        var names = a.Singles.Select(s => s.Method).ToList();
        PairOverlap? Pair(int i, int j) => a.Pairs.FirstOrDefault(p => (p.A == names[i] && p.B == names[j]) || (p.A == names[j] && p.B == names[i]));
        ConfidentOverlap? Conf(int i, int j) => a.Confident.FirstOrDefault(p => (p.A == names[i] && p.B == names[j]) || (p.A == names[j] && p.B == names[i]));
        var bars = a.Singles.OrderByDescending(s => s.Top1).Select(s => (s.Method, s.Top1))
            .Concat(Sizes(a).SelectMany(size => new[] { EnsembleRule.Logits, EnsembleRule.Probabilities }
                .Select(rule => a.Best(size.Size, rule)).Where(e => e != null)
                .Select(e => ($"{size.Label} ({RuleName(e!.Rule)})", e.Top1))))
            .ToList();
        var ensembleRows = Sizes(a).SelectMany(size => new[] { EnsembleRule.Logits, EnsembleRule.Probabilities }
            .Select(rule => a.Best(size.Size, rule)).Where(e => e != null)
            .Select(e => (IReadOnlyList<string>)new[] { size.Label, RuleName(e!.Rule), string.Join(" + ", e.Members), F(e.Top1), F(e.Top1 - a.BestSingle.Top1, "+0.00;-0.00") }));
        return Section($"{r.Task} ({r.Examples} test examples)",
            Bars(bars, "%", 100, "F2", Palette[0], left: 200)
            + "<h3>Exactly one of the pair right (% of test examples)</h3>" + Heatmap(names, (i, j) => Pair(i, j)?.Disagreement)
            + "<h3>Both wrong (%)</h3>" + Heatmap(names, (i, j) => Pair(i, j)?.BothWrong)
            + $"<h3>Shared among the {a.ConfidentK} most confident test examples (shared by all: {a.ConfidentSharedByAll})</h3>" + Heatmap(names, (i, j) => Conf(i, j)?.Shared, "F0")
            + "<h3>Best ensembles by size</h3>" + HtmlTable(new[] { "size", "rule", "members", "top-1 %", "vs best single" }, ensembleRows),
            $"Best single method: {a.BestSingle.Method} ({F(a.BestSingle.Top1)} %).");
    }
}
