using System.Text;

namespace PeftSharp.Reporting;

/// <summary>One cell of a report table; a <see cref="Strong"/> cell's text is emphasised (bold in Markdown and HTML),
/// its <see cref="Suffix"/> not.</summary>
public readonly record struct Cell(string Text, bool Strong = false, string Suffix = "")
{
    public static implicit operator Cell(string text) => new(text);
}

/// <summary>
/// A report's table as data: every page renders it from here, as Markdown (summaries, the README's generated section)
/// or as HTML (report pages), so neither is ever parsed back out of the other.
/// </summary>
public sealed record ReportTable(IReadOnlyList<string> Header, IReadOnlyList<IReadOnlyList<Cell>> Rows)
{
    public ReportTable(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
        : this(header, rows.Select(r => (IReadOnlyList<Cell>)r.Select(c => new Cell(c)).ToList()).ToList()) { }

    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine("| " + string.Join(" | ", Header) + " |");
        sb.AppendLine("|" + string.Concat(Header.Select(_ => "---|")));
        foreach (var row in Rows) sb.AppendLine("| " + string.Join(" | ", row.Select(c => (c.Strong ? $"**{c.Text}**" : c.Text) + c.Suffix)) + " |");
        return sb.ToString();
    }

    public string ToHtml()
    {
        var sb = new StringBuilder("<table><tr>");
        foreach (var h in Header) sb.Append($"<th>{Html.Esc(h)}</th>");
        sb.Append("</tr>");
        foreach (var row in Rows)
            sb.Append("<tr>").Append(string.Concat(row.Select(c => $"<td>{(c.Strong ? $"<b>{Html.Esc(c.Text)}</b>" : Html.Esc(c.Text))}{Html.Esc(c.Suffix)}</td>"))).Append("</tr>");
        return sb.Append("</table>").ToString();
    }
}
