using System.Globalization;
using System.Net;
using System.Text;

namespace PeftSharp.Reporting;

/// <summary>Self-contained HTML report pages (one stylesheet, sections, tables, number formats), shared by the
/// benchmark, every study and the task families' benchmarks.</summary>
public static class Html
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The one stylesheet of every report page.</summary>
    public const string Stylesheet = """
        body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
        td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
        .bad{color:#b00}.note{color:#555;font-size:13px}svg{background:#fff;border:1px solid #ddd;margin:.5em 0}h2{margin-top:1.6em}
        """;

    public static string Esc(string s) => WebUtility.HtmlEncode(s);

    /// <summary>A number with <paramref name="format"/>, or "–" for none.</summary>
    public static string F(double? v, string format = "F2") => v is double d ? d.ToString(format, Inv) : "–";

    /// <summary>A self-contained page: title, a note on how it was produced, then the sections (already HTML).</summary>
    public static string Page(string title, string note, IEnumerable<string> sections)
    {
        var sb = new StringBuilder("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
        sb.Append($"<title>{Esc(title)}</title><style>{Stylesheet}</style></head><body>");
        sb.Append($"<h1>{Esc(title)}</h1><p class=note>{Esc(note)}</p>");
        foreach (var s in sections) sb.Append(s);
        return sb.Append("</body></html>").ToString();
    }

    public static string Section(string heading, string body, string? note = null) =>
        $"<h2>{Esc(heading)}</h2>{(note == null ? "" : $"<p class=note>{Esc(note)}</p>")}{body}";

    public static string HtmlTable(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows) => new ReportTable(header, rows).ToHtml();

    public static string MarkdownTable(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows) => new ReportTable(header, rows).ToMarkdown();

    /// <summary>A bulleted list of sentences.</summary>
    public static string List(IEnumerable<string> items) => "<ul>" + string.Concat(items.Select(c => $"<li>{Esc(c)}</li>")) + "</ul>";

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
}
