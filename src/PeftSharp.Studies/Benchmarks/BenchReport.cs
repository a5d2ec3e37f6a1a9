using System.Globalization;
using System.Net;
using System.Text;
using PeftSharp.Evaluation;
using PeftSharp.Suite;

using PeftSharp.Reporting;
using static PeftSharp.Reporting.Html;

namespace PeftSharp.Benchmarks;

/// <summary>One method's aggregate over the suite (pretrained backbone).</summary>
public sealed record MethodSummary(string Method, double? Natural, double? Specialized, double? Structured, double? MeanOfGroups,
                                   double? MeanOfTasks, long TrainableParams, double? Ppt, double TrainSeconds, int Failed)
{
    /// <summary>The paired bootstrap's interval, p-value against the best and tier (null when a cell failed).</summary>
    public MethodComparison? Comparison { get; init; }
}

/// <summary>Aggregates a benchmark and writes its Markdown summary and self-contained HTML report.</summary>
public sealed class BenchReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly TaskGroup[] Groups = { TaskGroup.Natural, TaskGroup.Specialized, TaskGroup.Structured };
    readonly BenchOutcome outcome;

    public BenchReport(BenchOutcome outcome)
    {
        this.outcome = outcome;
        var comparisons = Compare().ToDictionary(c => c.Method);
        Summaries = outcome.Profile.Methods.Select(m => Summarise(m) with { Comparison = comparisons.GetValueOrDefault(m) }).ToList();
    }

    /// <summary>The paired bootstrap over every method whose cells all finished.</summary>
    IReadOnlyList<MethodComparison> Compare()
    {
        var tasks = TaskNames;
        var complete = outcome.Profile.Methods
            .Select(m => (Method: m, Cells: tasks.Select(t => Pretrained.FirstOrDefault(c => c.Task == t && c.Method == m)).ToList()))
            .Where(m => m.Cells.All(c => c != null && c.TestCorrect.Count > 0))
            .Select(m => new MethodResults(m.Method, m.Cells.Select(c => new TaskResults(c!.Task, c.Group.ToString(), c.TestCorrect)).ToList()))
            .ToList();
        return PairedBootstrap.Compare(complete);
    }

    public IReadOnlyList<MethodSummary> Summaries { get; }
    IEnumerable<BenchCell> Pretrained => outcome.Cells.Where(c => c.Backbone == SuiteBenchmark.PretrainedBackbone);
    IReadOnlyList<string> TaskNames => outcome.Cells.Select(c => c.Task).Distinct().ToList();

    MethodSummary Summarise(string method)
    {
        var cells = Pretrained.Where(c => c.Method == method).ToList();
        double? Group(TaskGroup g) => Mean(cells.Where(c => c.Group == g).Select(c => c.TestTop1));
        var groups = Groups.Select(Group).ToList();
        double? meanOfGroups = groups.All(g => g != null) ? groups.Average() : Mean(groups);
        long parameters = cells.Select(c => c.TrainableParams).DefaultIfEmpty(0).Max();
        return new MethodSummary(method, groups[0], groups[1], groups[2], meanOfGroups, Mean(cells.Select(c => c.TestTop1)), parameters,
                                 meanOfGroups is double m ? Ppt.Compute(m / 100, parameters) : null, cells.Sum(c => c.TrainSeconds),
                                 cells.Count(c => c.TestTop1 == null));
    }

    static double? Mean(IEnumerable<double?> values)
    {
        var v = values.Where(x => x != null).Select(x => x!.Value).ToList();
        return v.Count == 0 ? null : v.Average();
    }


    /// <summary>Spearman rank correlation between our mean of group means and the study's, over shared methods.</summary>
    public (double? Rho, int Count) RankAgreement()
    {
        var shared = Summaries.Where(s => s.MeanOfGroups != null && PublishedResults.UnifyingStudy.ContainsKey(s.Method)).ToList();
        if (shared.Count < 3) return (null, shared.Count);
        var ours = Ranks(shared.Select(s => s.MeanOfGroups!.Value).ToList());
        var theirs = Ranks(shared.Select(s => PublishedResults.UnifyingStudy[s.Method].MeanOfGroups).ToList());
        double mo = ours.Average(), mt = theirs.Average();
        double cov = ours.Zip(theirs).Sum(p => (p.First - mo) * (p.Second - mt));
        double so = Math.Sqrt(ours.Sum(x => (x - mo) * (x - mo))), st = Math.Sqrt(theirs.Sum(x => (x - mt) * (x - mt)));
        return (so * st == 0 ? null : cov / (so * st), shared.Count);
    }

    static List<double> Ranks(List<double> values)
    {
        var order = values.Select((v, i) => (v, i)).OrderByDescending(p => p.v).ToList();
        var ranks = new double[values.Count];
        for (int k = 0; k < order.Count;)
        {
            int j = k;
            while (j + 1 < order.Count && order[j + 1].v == order[k].v) j++;
            for (int m = k; m <= j; m++) ranks[order[m].i] = (k + j) / 2.0 + 1;
            k = j + 1;
        }
        return ranks.ToList();
    }

    /// <summary>The study's claims checked on our numbers, as sentences.</summary>
    public IReadOnlyList<string> Claims()
    {
        var claims = new List<string>();
        var byMethod = Summaries.ToDictionary(s => s.Method);
        var peft = Summaries.Where(s => StudyMethods().Contains(s.Method) && Tuners.TunerRegistry.IsPeft(s.Method) && s.MeanOfGroups != null).ToList();
        if (byMethod.TryGetValue("linear", out var linear) && linear.MeanOfGroups is double lin && peft.Count > 0)
        {
            int beat = peft.Count(p => p.MeanOfGroups > lin);
            claims.Add($"PEFT beats linear probing: {beat} of {peft.Count} study methods do here (mean of group means; linear {lin:F2}). The study: all do. {(beat == peft.Count ? "Agrees." : "Disagrees for " + string.Join(", ", peft.Where(p => p.MeanOfGroups <= lin).Select(p => p.Method)) + ".")}");
        }
        if (byMethod.TryGetValue("full", out var full) && full.MeanOfGroups is double fu && peft.Count > 0)
        {
            int beat = peft.Count(p => p.MeanOfGroups > fu);
            claims.Add($"PEFT beats full fine-tuning: {beat} of {peft.Count} do here (full {fu:F2}). The study: all do on VTAB-1K. {(beat == peft.Count ? "Agrees." : beat >= peft.Count / 2 ? "Mostly agrees." : "Disagrees: with few epochs and a small backbone full fine-tuning is not the outlier it is for ViT-B/16.")}");
        }
        var spreadSet = peft.Where(p => p.Method != "vpt-shallow").ToList();
        if (spreadSet.Count > 1)
        {
            var sorted = spreadSet.OrderByDescending(p => p.MeanOfGroups).ToList();
            double spread = sorted[0].MeanOfGroups!.Value - sorted[^1].MeanOfGroups!.Value;
            var studyPeft = PublishedResults.UnifyingStudy.Values.Where(r => r.Method is not ("linear" or "full" or "vpt-shallow")).Select(r => r.MeanOfGroups).ToList();
            claims.Add($"Once tuned, PEFT methods land close together: spread {spread:F2} points here (best {sorted[0].Method}, worst {sorted[^1].Method}; excluding VPT-shallow, as for the study's {studyPeft.Max() - studyPeft.Min():F2} points){(outcome.Profile.SearchesOnVal200 ? "." : ". Here nothing was tuned (one configuration per method), so a method whose default does not suit this backbone stands out.")}");
        }
        if (byMethod.TryGetValue("lora", out var lora) && lora.MeanOfGroups is double lo && peft.Count > 1)
        {
            var gaps = peft.Where(p => p.Method != "lora").Select(p => (p.Method, Gap: lo - p.MeanOfGroups!.Value)).OrderByDescending(g => g.Gap).ToList();
            var far = gaps.Where(g => g.Gap > 8).ToList();
            claims.Add(far.Count == 0
                ? $"Every tuned PEFT method is within 8 points of LoRA (largest gap {gaps[0].Gap:F2} ({gaps[0].Method}))."
                : $"More than 8 points below LoRA: {string.Join(", ", far.Select(g => $"{g.Method} ({g.Gap:F2})"))}.");
        }
        var evidence = PretrainingEvidence().Where(e => e.Pretrained != null && e.Random != null).ToList();
        if (evidence.Count > 0)
        {
            var losses = evidence.Where(e => e.Pretrained <= e.Random).Select(e => $"{e.Task} ({e.Pretrained:F1} vs {e.Random:F1})").ToList();
            var margins = evidence.Select(e => e.Pretrained!.Value - e.Random!.Value).ToList();
            claims.Add($"The default backbone is pretrained: its linear probe beats a random-init backbone's on {evidence.Count - losses.Count} of {evidence.Count} tasks " +
                       $"(margin {margins.Min():+0.0;-0.0} to {margins.Max():+0.0;-0.0} points){(losses.Count == 0 ? "." : "; it loses on " + string.Join(", ", losses) + ".")}");
        }
        var (rho, n) = RankAgreement();
        if (rho is double r)
            claims.Add($"Ranking of the {n} methods by mean of group means vs the study's: Spearman ρ = {r:F2} ({(r > 0.5 ? "similar order" : r > 0 ? "weakly similar order" : "different order")}).");
        return claims;
    }

    static HashSet<string> StudyMethods() => Tuners.TunerRegistry.StudyMethods.ToHashSet();

    /// <summary>Linear probe on the pretrained vs a random-init backbone of the same shape, per task.</summary>
    public IReadOnlyList<(string Task, double? Pretrained, double? Random)> PretrainingEvidence() =>
        TaskNames.Select(t => (t,
            outcome.Cells.FirstOrDefault(c => c.Task == t && c.Method == "linear" && c.Backbone == SuiteBenchmark.PretrainedBackbone)?.TestTop1,
            outcome.Cells.FirstOrDefault(c => c.Task == t && c.Method == "linear" && c.Backbone == SuiteBenchmark.RandomBackbone)?.TestTop1)).ToList();

    // ---------------- Tables (rendered as Markdown for summary.md and the README, as HTML for report.html) ----------------

    /// <summary>The run's description; <paramref name="markdown"/> marks names as code.</summary>
    string Intro(bool markdown)
    {
        var p = outcome.Profile;
        string Code(string s) => markdown ? $"`{s}`" : s;
        return $"Profile {Code(p.Name)}: {TaskNames.Count} tasks × {p.Methods.Count} methods; {p.Description()}. Backbone {Code(outcome.Checkpoint)}, {outcome.Device}, {outcome.Seconds / 60:F1} min end to end (runs found finished in the database are reused, not retrained; the training time of all its runs is {outcome.Cells.Sum(c => c.TrainSeconds) / 60:F1} min; its searches trained {outcome.Cells.Sum(c => c.SearchImages).ToString("N0", CultureInfo.InvariantCulture)} images, epochs × images). Machine: {outcome.Machine}.";
    }

    ReportTable SummaryTable() => new(
        ["tier", "method", "natural", "specialized", "structured", "mean of groups (95 % CI)", "vs best", "mean of tasks", "trainable params", "PPT", "train s", "study mean of groups", "V-PETL mean of 19 tasks (params)"],
        Ranked.Select(s =>
        {
            string study = PublishedResults.UnifyingStudy.TryGetValue(s.Method, out var row) ? row.MeanOfGroups.ToString("F2", Inv) : "–";
            string vpetl = PublishedResults.VPetl.TryGetValue(s.Method, out var v) ? string.Create(Inv, $"{v.Mean19:F2} ({v.Params})") : "–";
            var c = s.Comparison;
            string interval = c == null ? "" : string.Create(Inv, $" ({c.Low:F1}–{c.High:F1})");
            string vsBest = c == null ? "–" : c.PValueVsBest >= 1 ? "best" : string.Create(Inv, $"p = {c.PValueVsBest:F3}{(c.DiffersFromBest ? " *" : "")}");
            return (IReadOnlyList<Cell>)new Cell[]
            {
                c == null ? "–" : c.Tier.ToString(Inv), $"{s.Method}{(s.Failed > 0 ? $" ({s.Failed} failed)" : "")}", F(s.Natural), F(s.Specialized), F(s.Structured),
                new(F(s.MeanOfGroups), Strong: true, Suffix: interval), vsBest, F(s.MeanOfTasks), s.TrainableParams.ToString("N0", Inv), F(s.Ppt, "F3"),
                s.TrainSeconds.ToString("F0", Inv), study, vpetl,
            };
        }).ToList());

    /// <summary>What the two published columns are, and why V-PETL's figures are not ours to compare digit by digit.</summary>
    static string PublishedNote =>
        $"Published columns: the unifying study's mean of group means and V-PETL Bench's row, both VTAB-1K with ViT-B/16 (ImageNet-21k), not this backbone or these tasks. {PublishedResults.VPetlCaveat}.";

    string TiersNote(bool markdown) =>
        $"Tiers group methods that are not significantly different: a tier is its leader and every method whose difference from it is not significant (paired bootstrap over test images and seeds, 2000 replicates, two-sided p < {PairedBootstrap.Alpha:F2}); {(markdown ? "`*`" : "*")} marks a significant difference from the best method.";

    ReportTable ConfigurationTable() => new(
        new[] { "method" }.Concat(TaskNames).ToList(),
        Ranked.Select(s => (IReadOnlyList<string>)new[] { s.Method }.Concat(TaskNames.Select(t => CellOf(t, s.Method) is BenchCell cell ? (cell.Error != null ? "failed" : cell.Configuration) : "–")).ToList()));

    ReportTable PretrainingTable() => new(["task", "pretrained", "random init"],
        PretrainingEvidence().Select(e => (IReadOnlyList<string>)new[] { e.Task, F(e.Pretrained), F(e.Random) }));

    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine(Intro(markdown: true));
        sb.AppendLine();
        sb.Append(SummaryTable().ToMarkdown());
        sb.AppendLine();
        sb.AppendLine(PublishedNote);
        sb.AppendLine();
        sb.AppendLine(TiersNote(markdown: true));
        sb.AppendLine();
        sb.AppendLine("Configuration chosen on val200 (the final runs' settings):");
        sb.AppendLine();
        sb.Append(ConfigurationTable().ToMarkdown());
        sb.AppendLine();
        sb.AppendLine("Linear probe, pretrained vs random-init backbone of the same shape (test top-1 %):");
        sb.AppendLine();
        sb.Append(PretrainingTable().ToMarkdown());
        sb.AppendLine();
        foreach (var c in Claims()) sb.AppendLine($"- {c}");
        return sb.ToString();
    }

    /// <summary>Methods best first (mean of group means).</summary>
    IReadOnlyList<MethodSummary> Ranked => Summaries.OrderByDescending(s => s.MeanOfGroups ?? -1).ToList();

    BenchCell? CellOf(string task, string method) => Pretrained.FirstOrDefault(c => c.Task == task && c.Method == method);

    // ---------------- HTML ----------------

    public string Html() => Reporting.Html.Page("PeftSharp benchmark: mini-VTAB", Intro(markdown: false),
    [
        Section("Accuracy vs trainable parameters", ScatterSvg(), "Red: the Pareto front (no method is more accurate with as few trainable parameters). Whiskers: 95 % bootstrap interval."),
        Section("Per-group accuracy", Charts.GroupedBars(Groups.Select(g => g.ToString().ToLowerInvariant()).ToList(), ["#4e9a06", "#c4a000", "#3465a4"],
            Summaries.Where(s => s.MeanOfGroups != null).OrderByDescending(s => s.MeanOfGroups)
                     .Select(s => (s.Method, (IReadOnlyList<double?>)[s.Natural, s.Specialized, s.Structured])).ToList())),
        Section("Performance–parameter trade-off (PPT)", Charts.Bars(Summaries.Where(s => s.Ppt != null).OrderByDescending(s => s.Ppt).Select(s => (s.Method, s.Ppt!.Value)).ToList(), "PPT", 1.0)),
        Section("Summary per method", SummaryTable().ToHtml() + $"<p class=note>{Esc(PublishedNote)}</p><p class=note>{Esc(TiersNote(markdown: false))}</p>"),
        Section("Per-task accuracy", Heatmap(), "Test top-1 %; the colour runs from the worst (white) to the best (green) method on each task."),
        Section("Agreement with the unifying study", AgreementTable(), "Mean of group means and rank among the methods both have; the study's are VTAB-1K with ViT-B/16."),
        Section("Configuration chosen on val200", ConfigurationTable().ToHtml()),
        Section("Is the default backbone pretrained?", Charts.GroupedBars(["pretrained", "random init"], ["#cc0000", "#888"],
            PretrainingEvidence().Select(e => (e.Task, (IReadOnlyList<double?>)[e.Pretrained, e.Random])).ToList(), left: 140, width: 520),
            "Linear probe (tuned the same way) on the shipped backbone vs a random-init backbone of the same shape."),
        Section("Claims of the unifying study, checked here", List(Claims()) + "<p class=note>The study's numbers are VTAB-1K with ViT-B/16 (ImageNet-21k). Ours come from a small self-pretrained ViT on a mini-VTAB built from Debian-packaged data, so only relative claims compare.</p>"),
        Section("Every task × method (test top-1 %)", TaskTable()),
    ]);

    string TaskTable()
    {
        var sb = new StringBuilder("<table><tr><th>task</th><th>group</th>");
        foreach (var m in outcome.Profile.Methods) sb.Append($"<th>{Esc(m)}</th>");
        sb.Append("<th>linear (random init)</th></tr>");
        foreach (var task in TaskNames)
        {
            var group = outcome.Cells.First(c => c.Task == task).Group;
            sb.Append($"<tr><td>{Esc(task)}</td><td>{group.ToString().ToLowerInvariant()}</td>");
            foreach (var m in outcome.Profile.Methods)
            {
                var cell = Pretrained.FirstOrDefault(c => c.Task == task && c.Method == m);
                sb.Append(cell?.TestTop1 is double v ? $"<td>{v:F1}</td>" : $"<td class=bad title=\"{Esc(cell?.Error ?? "")}\">failed</td>");
            }
            var rnd = outcome.Cells.FirstOrDefault(c => c.Task == task && c.Backbone == SuiteBenchmark.RandomBackbone);
            sb.Append($"<td>{F(rnd?.TestTop1, "F1")}</td></tr>");
        }
        return sb.Append("</table>").ToString();
    }

    string ScatterSvg()
    {
        const int w = 760, h = 420, left = 60, right = 20, top = 20, bottom = 50;
        var points = Summaries.Where(s => s.MeanOfGroups != null).ToList();
        if (points.Count == 0) return "<p>no data</p>";
        double X(long p) => Math.Log10(Math.Max(p, 1));
        double xmin = 0, xmax = Math.Max(1, Math.Ceiling(points.Max(p => X(p.TrainableParams))));
        double ymin = Math.Floor(points.Min(p => p.MeanOfGroups!.Value) / 5) * 5, ymax = Math.Ceiling(points.Max(p => p.MeanOfGroups!.Value) / 5) * 5 + 1;
        double Px(double x) => left + (x - xmin) / (xmax - xmin) * (w - left - right);
        double Py(double y) => h - bottom - (y - ymin) / (ymax - ymin) * (h - top - bottom);
        var sb = new StringBuilder($"<svg width={w} height={h} viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg' font-size='11'>");
        for (int e = (int)xmin; e <= xmax; e++)
            sb.Append($"<line x1={Px(e):F0} y1={top} x2={Px(e):F0} y2={h - bottom} stroke='#eee'/><text x={Px(e):F0} y={h - bottom + 15} text-anchor=middle>{(e == 0 ? "≤1" : "1e" + e)}</text>");
        for (double y = ymin; y <= ymax; y += 5)
            sb.Append($"<line x1={left} y1={Py(y):F0} x2={w - right} y2={Py(y):F0} stroke='#eee'/><text x={left - 5} y={Py(y) + 4:F0} text-anchor=end>{y:F0}</text>");
        sb.Append($"<text x={w / 2} y={h - 10} text-anchor=middle>trainable parameters (log scale; the head excluded)</text>");
        sb.Append($"<text x=14 y={h / 2} transform='rotate(-90 14 {h / 2})' text-anchor=middle>mean of group means, test top-1 %</text>");
        var front = ParetoFront(points);
        sb.Append($"<polyline fill=none stroke='#cc0000' stroke-width=1.5 points='{string.Join(" ", front.Select(p => string.Create(Inv, $"{Px(X(p.TrainableParams)):F1},{Py(p.MeanOfGroups!.Value):F1}")))}'/>");
        var labels = new LabelPlacer();
        foreach (var p in points.OrderByDescending(p => p.MeanOfGroups))
        {
            double x = Px(X(p.TrainableParams)), y = Py(p.MeanOfGroups!.Value);
            if (p.Comparison is MethodComparison c)
                sb.Append(string.Create(Inv, $"<line x1={x:F1} x2={x:F1} y1={Py(Math.Max(c.Low, ymin)):F1} y2={Py(Math.Min(c.High, ymax)):F1} stroke='#999'/>"));
            string colour = front.Contains(p) ? "#cc0000" : "#3465a4";
            double labelY = labels.Place(x + 6, y - 4, p.Method.Length * 6.2);
            sb.Append(string.Create(Inv, $"<circle cx={x:F1} cy={y:F1} r=4 fill='{colour}'><title>{Esc(p.Method)}: {p.MeanOfGroups:F2}% with {p.TrainableParams:N0} parameters</title></circle><text x={x + 6:F1} y={labelY:F1}>{Esc(p.Method)}</text>"));
        }
        return sb.Append("</svg>").ToString();
    }

    /// <summary>Moves each scatter label down, then up, in 12-px steps until it overlaps no label placed before it.</summary>
    sealed class LabelPlacer
    {
        readonly List<(double X, double Y, double Width)> placed = new();

        public double Place(double x, double y, double width)
        {
            foreach (double dy in new[] { 0.0, 12, -12, 24, -24, 36, -36, 48 })
                if (!placed.Any(p => Math.Abs(p.Y - (y + dy)) < 11 && x < p.X + p.Width && p.X < x + width))
                {
                    placed.Add((x, y + dy, width));
                    return y + dy;
                }
            placed.Add((x, y, width));
            return y;
        }
    }

    /// <summary>The methods no other method beats with at most as many trainable parameters, fewest parameters first.</summary>
    public static IReadOnlyList<MethodSummary> ParetoFront(IEnumerable<MethodSummary> methods)
    {
        var front = new List<MethodSummary>();
        foreach (var m in methods.Where(m => m.MeanOfGroups != null).OrderBy(m => m.TrainableParams).ThenByDescending(m => m.MeanOfGroups))
            if (front.Count == 0 || m.MeanOfGroups > front[^1].MeanOfGroups) front.Add(m);
        return front;
    }

    string Heatmap()
    {
        var sb = new StringBuilder("<table><tr><th>method</th>");
        foreach (var t in TaskNames) sb.Append($"<th>{Esc(t)}</th>");
        sb.Append("</tr>");
        var range = TaskNames.ToDictionary(t => t, t =>
        {
            var v = Pretrained.Where(c => c.Task == t && c.TestTop1 != null).Select(c => c.TestTop1!.Value).ToList();
            return v.Count == 0 ? (0.0, 1.0) : (v.Min(), v.Max());
        });
        foreach (var s in Ranked)
        {
            sb.Append($"<tr><td>{Esc(s.Method)}</td>");
            foreach (var t in TaskNames)
            {
                if (CellOf(t, s.Method)?.TestTop1 is not double v) { sb.Append("<td class=bad>–</td>"); continue; }
                var (lo, hi) = range[t];
                double f = hi > lo ? (v - lo) / (hi - lo) : 1;
                int r = (int)(255 - 160 * f), g = (int)(255 - 60 * f), b = (int)(255 - 160 * f);
                sb.Append(string.Create(Inv, $"<td style='background:rgb({r},{g},{b})'>{v:F1}</td>"));
            }
            sb.Append("</tr>");
        }
        return sb.Append("</table>").ToString();
    }

    string AgreementTable()
    {
        var shared = Summaries.Where(s => s.MeanOfGroups != null && PublishedResults.UnifyingStudy.ContainsKey(s.Method)).ToList();
        if (shared.Count == 0) return "<p>no method shared with the study</p>";
        var ours = Ranks(shared.Select(s => s.MeanOfGroups!.Value).ToList());
        var theirs = Ranks(shared.Select(s => PublishedResults.UnifyingStudy[s.Method].MeanOfGroups).ToList());
        double bestOurs = shared.Max(s => s.MeanOfGroups!.Value), bestTheirs = shared.Max(s => PublishedResults.UnifyingStudy[s.Method].MeanOfGroups);
        var sb = new StringBuilder("<table><tr><th>method</th><th>ours</th><th>our rank</th><th>below our best</th><th>study</th><th>study rank</th><th>below the study's best</th></tr>");
        foreach (int i in Enumerable.Range(0, shared.Count).OrderBy(i => ours[i]))
        {
            var s = shared[i];
            double study = PublishedResults.UnifyingStudy[s.Method].MeanOfGroups;
            sb.Append(string.Create(Inv, $"<tr><td>{Esc(s.Method)}</td><td>{s.MeanOfGroups:F2}</td><td>{ours[i]:G}</td><td>{bestOurs - s.MeanOfGroups:F2}</td><td>{study:F2}</td><td>{theirs[i]:G}</td><td>{bestTheirs - study:F2}</td></tr>"));
        }
        return sb.Append("</table>").ToString();
    }

    /// <summary>Writes report.html and summary.md into <paramref name="directory"/>.</summary>
    public void Write(string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "report.html"), Html());
        File.WriteAllText(Path.Combine(directory, "summary.md"), Markdown());
    }

    /// <summary>Replaces the text between the bench markers of a README with the summary (the results section is
    /// produced by the command, never typed by hand).</summary>
    public static void UpdateReadme(string readmePath, string markdown)
    {
        const string begin = "<!-- bench:begin -->", end = "<!-- bench:end -->";
        string text = File.ReadAllText(readmePath);
        int b = text.IndexOf(begin, StringComparison.Ordinal), e = text.IndexOf(end, StringComparison.Ordinal);
        if (b < 0 || e < b) throw new PeftSharpException($"{readmePath}: no '{begin}' … '{end}' section to update");
        File.WriteAllText(readmePath, text[..(b + begin.Length)] + "\n" + markdown.TrimEnd() + "\n" + text[e..]);
    }
}
