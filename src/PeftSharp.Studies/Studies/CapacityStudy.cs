using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;
using PeftSharp.Reporting;
using static PeftSharp.Reporting.Charts;
using static PeftSharp.Reporting.Html;
using static PeftSharp.Studies.StudyReport;

namespace PeftSharp.Studies;

/// <summary>A method's capacity knob and the values the study grows it through.</summary>
public sealed record KnobRange(string Hyper, IReadOnlyList<string> Values);

/// <summary>What the capacity study runs: the protocol (tasks, epochs, lrs, splits), each method's knob, and the
/// methods without a knob drawn as single reference points (linear probe, full fine-tuning).</summary>
public sealed record CapacityProfile(BenchProfile Protocol, IReadOnlyDictionary<string, KnobRange> Knobs, IReadOnlyList<string> References)
{
    public IEnumerable<string> Methods => References.Concat(Knobs.Keys);
}

/// <summary>One point of the capacity grid: a method at one knob value on one task.</summary>
public sealed record CapacityCell(string Task, string Method, string? Knob, string? Value, long? TrainableParams, double? Top1, string? Error);

/// <summary>
/// The study's fourth finding, its parameter-size side: accuracy against trainable parameters as each method's
/// capacity knob grows (LoRA and adapter rank, VPT prompts, FacT rank), which shows where each method saturates.
/// Each knob value is its own cell, tuned over the profile's learning rates with the knob fixed.
/// </summary>
public sealed class CapacityStudy : IStudy
{
    public string Name => "capacity";
    public string Summary => "accuracy vs trainable parameters as each method's capacity knob grows";

    static KnobRange Knob(string hyper, params string[] values) => new(hyper, values);

    public static CapacityProfile Profile(string name) => name switch
    {
        // One task, one lr (no search), three or so values per knob: a smoke test of the whole path.
        "quick" => new(BenchProfile.Quick with { Tasks = new[] { "digits" }, Lrs = new[] { 1e-2 } },
            new Dictionary<string, KnobRange>
            {
                ["lora"] = Knob("rank", "1", "8", "32"), ["adapter-houlsby"] = Knob("rank", "2", "8", "32"),
                ["vpt-deep"] = Knob("prompts", "1", "10"), ["fact-tk"] = Knob("rank", "8", "32"),
            }, new[] { "linear" }),
        // One task per group, the benchmark's two lrs (full fine-tuning its lower ones), knobs over two orders of magnitude.
        "default" => new(BenchProfile.Default with { Tasks = new[] { "digits", "fashion-xray", "dsprites-loc" } },
            new Dictionary<string, KnobRange>
            {
                ["lora"] = Knob("rank", "1", "2", "4", "8", "16", "32"), ["adapter-houlsby"] = Knob("rank", "1", "4", "16", "64"),
                ["vpt-deep"] = Knob("prompts", "1", "5", "10", "20"), ["fact-tk"] = Knob("rank", "4", "8", "16", "32"),
            }, new[] { "linear", "full" }),
        "full" => new(BenchProfile.Full with { Tasks = new[] { "digits", "photo-patches", "fashion-xray", "digits-microscopy", "clevr-dist", "dsprites-loc" } },
            // Every method that declares a range to grow its size knob through (TunerMethod.Capacity).
            Tuners.TunerRegistry.ImageMethods.Where(m => m.Capacity?.Study != null)
                .ToDictionary(m => m.Id, m => Knob(m.Capacity!.Hyper, m.Capacity.Study!.ToArray()))
            , new[] { "linear", "full" }),
        _ => throw new PeftSharpException($"unknown study profile '{name}'; expected one of {string.Join(", ", StudyCatalog.Profiles)}"),
    };

    public StudyOutput Run(StudyContext context, string profileName, StudyOverrides? overrides = null)
    {
        var watch = Stopwatch.StartNew();
        var profile = Narrow(Profile(profileName), overrides ?? new StudyOverrides());
        var protocol = profile.Protocol;
        var cells = new List<CapacityCell>();
        foreach (var task in protocol.Tasks)
        {
            foreach (var method in profile.References)
                cells.Add(Cell(context.Tuned(protocol, task, method), null, null));
            foreach (var (method, knob) in profile.Knobs)
                foreach (var value in knob.Values)
                    cells.Add(Cell(context.Tuned(protocol, task, method, new Dictionary<string, string> { [knob.Hyper] = value }), knob.Hyper, value));
        }
        if (cells.All(c => c.Top1 == null))
            throw new PeftSharpException($"capacity: no run finished ({cells.First().Error})");
        var json = Header(Name, profileName, protocol.Description(), context, watch.Elapsed.TotalSeconds);
        json["knobs"] = new JsonObject(profile.Knobs.Select(k => KeyValuePair.Create(k.Key, (JsonNode?)new JsonObject
        {
            ["hyper"] = k.Value.Hyper, ["values"] = Array(k.Value.Values.Select(v => (JsonNode)v)),
        })));
        json["cells"] = Array(cells.Select(c => (JsonNode)new JsonObject
        {
            ["task"] = c.Task, ["method"] = c.Method, ["knob"] = c.Knob, ["value"] = c.Value,
            ["trainable_params"] = c.TrainableParams, ["top1"] = c.Top1 is double t ? Round(t) : null, ["error"] = c.Error,
        }));
        json["saturation"] = Array(Saturation(cells).Select(s => (JsonNode)new JsonObject
        {
            ["task"] = s.Task, ["method"] = s.Method, ["value"] = s.Value, ["trainable_params"] = s.TrainableParams, ["top1"] = Round(s.Top1),
        }));
        var table = SummaryTable(profile, cells);
        string summary = table.ToMarkdown() + "\n" + string.Concat(Findings(cells).Select(f => $"- {f}\n"));
        return new StudyOutput(Name, json, Html(profile, protocol, cells, table, watch.Elapsed.TotalSeconds), summary);
    }

    /// <summary>The profile with the overrides applied; --methods keeps only the knobs and references it names. A
    /// capacity cell fixes its knob, so only lr × wd is searched (not the full profile's study grids).</summary>
    static CapacityProfile Narrow(CapacityProfile profile, StudyOverrides overrides)
    {
        var protocol = overrides.Apply(profile.Protocol with { Methods = profile.Methods.ToList() }) with
        {
            StudyGrid = false, MethodGrids = new Dictionary<string, IReadOnlyDictionary<string, string[]>>(),
        };
        return new CapacityProfile(protocol, profile.Knobs.Where(k => protocol.Methods.Contains(k.Key)).ToDictionary(k => k.Key, k => k.Value),
                                   profile.References.Where(protocol.Methods.Contains).ToList());
    }

    static CapacityCell Cell(StudyRun run, string? knob, string? value) =>
        new(run.Task, run.Method, knob, value, run.Run?.Outcome?.TrainableParams, run.Top1, run.Error);

    /// <summary>Where each method saturates on each task: the smallest knob value whose top-1 is within one point of the
    /// method's best on that task.</summary>
    public static IReadOnlyList<(string Task, string Method, string Value, long TrainableParams, double Top1)> Saturation(IReadOnlyList<CapacityCell> cells) =>
        cells.Where(c => c.Knob != null && c.Top1 != null)
             .GroupBy(c => (c.Task, c.Method))
             .Select(g =>
             {
                 double best = g.Max(c => c.Top1!.Value);
                 var first = g.Where(c => c.Top1 >= best - 1).OrderBy(c => c.TrainableParams).First();
                 return (g.Key.Task, g.Key.Method, first.Value!, first.TrainableParams ?? 0, first.Top1!.Value);
             })
             .ToList();

    static string Label(CapacityCell c) => c.Knob == null ? c.Method : $"{c.Method} {c.Knob} {c.Value}";

    static ReportTable SummaryTable(CapacityProfile profile, IReadOnlyList<CapacityCell> cells)
    {
        var tasks = profile.Protocol.Tasks;
        var header = new[] { "method", "trainable params" }.Concat(tasks).Append("mean").ToList();
        var rows = cells.GroupBy(Label).Select(g =>
        {
            var byTask = tasks.Select(t => g.FirstOrDefault(c => c.Task == t)).ToList();
            var done = byTask.Where(c => c?.Top1 != null).Select(c => c!.Top1!.Value).ToList();
            return (IReadOnlyList<string>)new[] { g.Key, (g.Max(c => c.TrainableParams) ?? 0).ToString("N0", CultureInfo.InvariantCulture) }
                .Concat(byTask.Select(c => c?.Top1 is double v ? F(v) : "failed"))
                .Append(done.Count == tasks.Count ? F(done.Average()) : "–").ToList();
        });
        return new ReportTable(header, rows);
    }

    /// <summary>What the grid shows, per method: the accuracy gained from its smallest to its largest knob value, and
    /// where it saturates (averaged over tasks).</summary>
    static IReadOnlyList<string> Findings(IReadOnlyList<CapacityCell> cells)
    {
        var findings = new List<string>();
        var saturation = Saturation(cells);
        foreach (var method in cells.Where(c => c.Knob != null).Select(c => c.Method).Distinct())
        {
            var mine = cells.Where(c => c.Method == method && c.Top1 != null).ToList();
            var tasks = mine.Select(c => c.Task).Distinct().ToList();
            if (tasks.Count == 0) continue;
            double gain = tasks.Average(t =>
            {
                var ordered = mine.Where(c => c.Task == t).OrderBy(c => c.TrainableParams).ToList();
                return ordered[^1].Top1!.Value - ordered[0].Top1!.Value;
            });
            var values = saturation.Where(s => s.Method == method).Select(s => s.Value).ToList();
            findings.Add($"{method}: {gain:+0.00;-0.00} points from its smallest to its largest {mine[0].Knob} (mean over {tasks.Count} task{(tasks.Count == 1 ? "" : "s")}); within one point of its best from {mine[0].Knob} {string.Join(" / ", values)} ({string.Join(", ", saturation.Where(s => s.Method == method).Select(s => s.Task))}).");
        }
        return findings;
    }

    string Html(CapacityProfile profile, BenchProfile protocol, IReadOnlyList<CapacityCell> cells, ReportTable summary, double seconds)
    {
        var sections = new List<string>();
        foreach (var task in protocol.Tasks)
        {
            var series = cells.Where(c => c.Task == task && c.Top1 != null && c.TrainableParams != null).GroupBy(c => c.Method)
                .Select(g => new ChartSeries(g.Key, g.OrderBy(c => c.TrainableParams).Select(c => ((double)c.TrainableParams!.Value, c.Top1!.Value)).ToList())).ToList();
            sections.Add(Section(task, LineChart(series, "trainable parameters (log scale; the head excluded)", "test top-1 %", logX: true),
                                 "Each point is one knob value; a method without a knob (linear probe, full fine-tuning) is one point."));
        }
        sections.Add(Section("Every cell", summary.ToHtml()));
        sections.Add(Section("Findings", "<ul>" + string.Concat(Findings(cells).Select(f => $"<li>{Esc(f)}</li>")) + "</ul>"));
        var failed = cells.Where(c => c.Error != null).ToList();
        if (failed.Count > 0)
            sections.Add(Section("Failed cells", HtmlTable(new[] { "task", "cell", "error" }, failed.Select(c => (IReadOnlyList<string>)new[] { c.Task, Label(c), c.Error! }))));
        string knobs = string.Join("; ", profile.Knobs.Select(k => $"{k.Key} {k.Value.Hyper} {{{string.Join(", ", k.Value.Values)}}}"));
        return Page("PeftSharp study: capacity", $"Profile {protocol.Name}: {protocol.Description()}; knobs {knobs}. {seconds / 60:F1} min.", sections);
    }
}
