using System.Globalization;
using System.Text;
using static PeftSharp.Reporting.Html;

namespace PeftSharp.Reporting;

/// <summary>A named line of (x, y) points for <see cref="Charts.LineChart"/>, joined in the order given.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>The report pages' SVG charts (inline, so a page stays one self-contained file).</summary>
public static class Charts
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static readonly string[] Palette = { "#3465a4", "#cc0000", "#4e9a06", "#75507b", "#c4a000", "#ce5c00", "#2e3436", "#06989a", "#8f5902", "#a40000" };

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

    /// <summary>Horizontal bars labelled "value unit"; <paramref name="max"/> is the full width's value.</summary>
    public static string Bars(IReadOnlyList<(string Label, double Value)> bars, string unit, double max, string format = "F3",
                              string colour = "#75507b", int left = 130)
    {
        const int rowH = 18, width = 560;
        var sb = new StringBuilder($"<svg width={left + width + 70} height={bars.Count * rowH + 10} xmlns='http://www.w3.org/2000/svg' font-size='11'>");
        for (int i = 0; i < bars.Count; i++)
        {
            var (label, value) = bars[i];
            double len = Math.Max(0, value / max * width);
            sb.Append(string.Create(Inv, $"<text x={left - 6} y={i * rowH + 13} text-anchor=end>{Esc(label)}</text><rect x={left} y={i * rowH + 3} width={len:F1} height=13 fill='{colour}'/><text x={left + len + 4:F1} y={i * rowH + 13}>{value.ToString(format, Inv)} {unit}</text>"));
        }
        return sb.Append("</svg>").ToString();
    }

    /// <summary>Grouped horizontal bars: per row, one bar per series (values in %, the full width is 100).</summary>
    public static string GroupedBars(IReadOnlyList<string> seriesNames, IReadOnlyList<string> colours,
                                     IReadOnlyList<(string Label, IReadOnlyList<double?> Values)> rows, int left = 130, int width = 560)
    {
        int n = seriesNames.Count, rowH = n * 11 + 7;
        var sb = new StringBuilder($"<svg width={left + width + 60} height={rows.Count * rowH + 30} xmlns='http://www.w3.org/2000/svg' font-size='11'>");
        for (int g = 0; g < n; g++)
            sb.Append($"<rect x={left + g * 130} y=4 width=10 height=10 fill='{colours[g]}'/><text x={left + g * 130 + 14} y=13>{Esc(seriesNames[g])}</text>");
        for (int i = 0; i < rows.Count; i++)
        {
            var (label, values) = rows[i];
            int y0 = 24 + i * rowH;
            sb.Append($"<text x={left - 6} y={y0 + n * 11 / 2 + 4} text-anchor=end>{Esc(label)}</text>");
            for (int g = 0; g < n; g++)
            {
                double v = values[g] ?? 0;
                sb.Append(string.Create(Inv, $"<rect x={left} y={y0 + g * 11} width={v / 100 * width:F1} height=10 fill='{colours[g]}'><title>{Esc(label)} {Esc(seriesNames[g])}: {F(values[g])}</title></rect><text x={left + v / 100 * width + 4:F1} y={y0 + g * 11 + 9}>{F(values[g], "F1")}</text>"));
            }
        }
        return sb.Append("</svg>").ToString();
    }
}
