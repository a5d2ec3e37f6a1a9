using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;

namespace PeftSharp.Studies;

/// <summary>One analysis of the unifying study: it obtains its runs through the context and returns its report.</summary>
public interface IStudy
{
    string Name { get; }
    string Summary { get; }
    /// <summary>Runs the analysis under the profile named <paramref name="profile"/> (quick, default or full),
    /// narrowed by <paramref name="overrides"/>.</summary>
    StudyOutput Run(StudyContext context, string profile, StudyOverrides? overrides = null);

    /// <summary>The checkpoint the study runs on unless told otherwise (the shipped ViT backbone).</summary>
    string DefaultCheckpoint() => Checkpoints.ShippedModels.RequireDefaultVit();
}

/// <summary>A narrower profile from the command line (a quick look, or a test on a tiny backbone): other tasks, a
/// subset of the methods, fewer epochs, other training-set sizes (many-shot).</summary>
public sealed record StudyOverrides(IReadOnlyList<string>? Tasks = null, IReadOnlyList<string>? Methods = null, int? Epochs = null,
                                    IReadOnlyList<int>? TrainSizes = null)
{
    public BenchProfile Apply(BenchProfile profile) =>
        (profile with { Tasks = Tasks ?? profile.Tasks, Methods = Methods ?? profile.Methods, Epochs = Epochs ?? profile.Epochs }).Validate();
}

/// <summary>A study's result: its JSON document, a self-contained HTML page and a short Markdown table.</summary>
public sealed record StudyOutput(string Name, JsonObject Json, string Html, string Summary)
{
    /// <summary>Writes DIR/NAME.html and DIR/NAME.json and returns their paths.</summary>
    public (string Html, string Json) Write(string directory)
    {
        Directory.CreateDirectory(directory);
        string html = Path.Combine(directory, Name + ".html"), json = Path.Combine(directory, Name + ".json");
        File.WriteAllText(html, Html);
        File.WriteAllText(json, Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return (html, json);
    }
}

/// <summary>The studies the <c>study</c> verb knows, by name.</summary>
public static class StudyCatalog
{
    public static IReadOnlyList<IStudy> All { get; } = new IStudy[] { new EnsembleStudy(), new RobustnessStudy(), new CapacityStudy(), new ManyShotStudy(), new VlScalingStudy() };

    public static IReadOnlyList<string> Profiles { get; } = new[] { "quick", "default", "full" };

    public static IStudy Get(string name) =>
        All.FirstOrDefault(s => s.Name == name)
        ?? throw new PeftSharpException($"unknown study '{name}'; expected one of {string.Join(", ", All.Select(s => s.Name))}");

    public static void CheckProfile(string profile)
    {
        if (!Profiles.Contains(profile))
            throw new PeftSharpException($"unknown study profile '{profile}'; expected one of {string.Join(", ", Profiles)}");
    }
}

/// <summary>A named line of (x, y) points for <see cref="StudyReport.LineChart"/>, joined in the order given.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>The pieces every study's report is built from: the HTML page, tables, SVG charts, number formats.</summary>
public static class StudyReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly string[] Palette = { "#3465a4", "#cc0000", "#4e9a06", "#75507b", "#c4a000", "#ce5c00", "#2e3436", "#06989a", "#8f5902", "#a40000" };

    public static string Esc(string s) => WebUtility.HtmlEncode(s);

    public static string F(double? v, string format = "F2") => v is double d ? d.ToString(format, Inv) : "–";

    /// <summary>A self-contained page: title, a note on how it was produced, then the sections (already HTML).</summary>
    public static string Page(string title, string note, IEnumerable<string> sections)
    {
        var sb = new StringBuilder("""
            <!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
            """);
        sb.Append($"<title>{Esc(title)}</title>");
        sb.Append("""
            <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
            td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
            .note{color:#555;font-size:13px}svg{background:#fff;border:1px solid #ddd;margin:.5em 0}h2{margin-top:1.6em}</style></head><body>
            """);
        sb.Append($"<h1>{Esc(title)}</h1><p class=note>{Esc(note)}</p>");
        foreach (var s in sections) sb.Append(s);
        return sb.Append("</body></html>").ToString();
    }

    public static string Section(string heading, string body, string? note = null) =>
        $"<h2>{Esc(heading)}</h2>{(note == null ? "" : $"<p class=note>{Esc(note)}</p>")}{body}";

    public static string HtmlTable(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var sb = new StringBuilder("<table><tr>");
        foreach (var h in header) sb.Append($"<th>{Esc(h)}</th>");
        sb.Append("</tr>");
        foreach (var row in rows) sb.Append("<tr>").Append(string.Concat(row.Select(c => $"<td>{Esc(c)}</td>"))).Append("</tr>");
        return sb.Append("</table>").ToString();
    }

    public static string MarkdownTable(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| " + string.Join(" | ", header) + " |");
        sb.AppendLine("|" + string.Concat(header.Select(_ => "---|")));
        foreach (var row in rows) sb.AppendLine("| " + string.Join(" | ", row) + " |");
        return sb.ToString();
    }

    /// <summary>The first Markdown table in <paramref name="markdown"/> as an HTML table.</summary>
    public static string MarkdownToHtml(string markdown)
    {
        var lines = markdown.Split('\n').SkipWhile(l => !l.StartsWith('|')).TakeWhile(l => l.StartsWith('|')).ToList();
        static string[] Cells(string line) => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray();
        return lines.Count < 2 ? "" : HtmlTable(Cells(lines[0]), lines.Skip(2).Select(l => (IReadOnlyList<string>)Cells(l)));
    }

    /// <summary>An SVG line chart, one coloured line per series; <paramref name="logX"/> plots log10 of x (values ≤ 1
    /// at 0, so a zero-parameter method still shows).</summary>
    public static string LineChart(IReadOnlyList<ChartSeries> series, string xLabel, string yLabel, bool logX)
    {
        const int w = 760, h = 380, left = 60, right = 150, top = 20, bottom = 50;
        var all = series.SelectMany(s => s.Points).ToList();
        if (all.Count == 0) return "<p>no data</p>";
        double X(double x) => logX ? Math.Log10(Math.Max(x, 1)) : x;
        double xmin = logX ? Math.Floor(all.Min(p => X(p.X))) : all.Min(p => p.X), xmax = logX ? Math.Ceiling(all.Max(p => X(p.X))) : all.Max(p => p.X);
        if (xmax <= xmin) xmax = xmin + 1;
        double ymin = Math.Floor(all.Min(p => p.Y) / 5) * 5, ymax = Math.Ceiling(all.Max(p => p.Y) / 5) * 5;
        if (ymax <= ymin) ymax = ymin + 5;
        double Px(double x) => left + (X(x) - xmin) / (xmax - xmin) * (w - left - right);
        double Py(double y) => h - bottom - (y - ymin) / (ymax - ymin) * (h - top - bottom);
        var sb = new StringBuilder($"<svg width={w} height={h} viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg' font-size='11'>");
        var ticks = logX ? Enumerable.Range((int)xmin, (int)(xmax - xmin) + 1).Select(e => (Value: Math.Pow(10, e), Label: e == 0 ? "≤1" : "1e" + e))
                         : Enumerable.Range(0, 6).Select(i => xmin + i * (xmax - xmin) / 5).Select(v => (Value: v, Label: v.ToString("G3", Inv)));
        foreach (var (value, label) in ticks)
            sb.Append(string.Create(Inv, $"<line x1={Px(value):F0} y1={top} x2={Px(value):F0} y2={h - bottom} stroke='#eee'/><text x={Px(value):F0} y={h - bottom + 15} text-anchor=middle>{label}</text>"));
        for (double y = ymin; y <= ymax; y += Math.Max(1, Math.Ceiling((ymax - ymin) / 10)))
            sb.Append(string.Create(Inv, $"<line x1={left} y1={Py(y):F0} x2={w - right} y2={Py(y):F0} stroke='#eee'/><text x={left - 5} y={Py(y) + 4:F0} text-anchor=end>{y:F0}</text>"));
        sb.Append($"<text x={(w - right + left) / 2} y={h - 10} text-anchor=middle>{Esc(xLabel)}</text>");
        sb.Append($"<text x=14 y={h / 2} transform='rotate(-90 14 {h / 2})' text-anchor=middle>{Esc(yLabel)}</text>");
        for (int i = 0; i < series.Count; i++)
        {
            string colour = Palette[i % Palette.Length];
            var points = series[i].Points;
            sb.Append($"<polyline fill=none stroke='{colour}' stroke-width=1.5 points='{string.Join(" ", points.Select(p => string.Create(Inv, $"{Px(p.X):F1},{Py(p.Y):F1}")))}'/>");
            foreach (var p in points)
                sb.Append(string.Create(Inv, $"<circle cx={Px(p.X):F1} cy={Py(p.Y):F1} r=3 fill='{colour}'><title>{Esc(series[i].Name)}: {p.Y:F2} at {p.X:G4}</title></circle>"));
            sb.Append(string.Create(Inv, $"<rect x={w - right + 10} y={top + i * 16} width=10 height=10 fill='{colour}'/><text x={w - right + 24} y={top + i * 16 + 9}>{Esc(series[i].Name)}</text>"));
        }
        return sb.Append("</svg>").ToString();
    }

    /// <summary>Horizontal bars with a value label each; <paramref name="max"/> is the full width's value.</summary>
    public static string Bars(IReadOnlyList<(string Label, double Value)> bars, double max, string unit) =>
        BenchReport.BarsSvg(bars, unit, max, "F2", Palette[0], left: 200);

    /// <summary>A square matrix as a table shaded from white (lowest) to orange (highest off-diagonal value).</summary>
    public static string Heatmap(IReadOnlyList<string> names, Func<int, int, double?> value, string format = "F1")
    {
        var values = (from i in Enumerable.Range(0, names.Count) from j in Enumerable.Range(0, names.Count) where i != j select value(i, j))
                     .Where(v => v != null).Select(v => v!.Value).ToList();
        double lo = values.DefaultIfEmpty(0).Min(), hi = values.DefaultIfEmpty(1).Max();
        var sb = new StringBuilder("<table><tr><th></th>");
        foreach (var n in names) sb.Append($"<th>{Esc(n)}</th>");
        sb.Append("</tr>");
        for (int i = 0; i < names.Count; i++)
        {
            sb.Append($"<tr><td>{Esc(names[i])}</td>");
            for (int j = 0; j < names.Count; j++)
            {
                if (i == j || value(i, j) is not double v) { sb.Append("<td>–</td>"); continue; }
                double f = hi > lo ? (v - lo) / (hi - lo) : 1;
                sb.Append(string.Create(Inv, $"<td style='background:rgb(255,{(int)(255 - 120 * f)},{(int)(255 - 200 * f)})'>{v.ToString(format, Inv)}</td>"));
            }
            sb.Append("</tr>");
        }
        return sb.Append("</table>").ToString();
    }

    /// <summary>The header every study's JSON starts with: which study, profile, protocol, backbone and time.</summary>
    public static JsonObject Header(string study, string profile, string protocol, StudyContext context, double seconds) => new()
    {
        ["study"] = study, ["profile"] = profile, ["protocol"] = protocol,
        ["backbone"] = Path.GetFileName(context.Options.Checkpoint), ["device"] = context.Device.ToString(),
        ["seconds"] = Math.Round(seconds, 1), ["units"] = "top-1 and overlaps in % of the test examples",
    };

    public static JsonArray Array(IEnumerable<JsonNode?> items) => new(items.ToArray());

    public static double Round(double v) => Math.Round(v, 3);
}
