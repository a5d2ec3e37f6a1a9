using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace PeftSharp.Tests;

/// <summary>The line charts (and the bench's scatter) in a report page, read back from their SVG: each chart's lines
/// (polyline vertices in drawing order), its points (circle centres with their hover titles) and its text labels.</summary>
public sealed record SvgChart(IReadOnlyList<IReadOnlyList<(double X, double Y)>> Lines, IReadOnlyList<SvgPoint> Points, IReadOnlyList<string> Texts)
{
    static readonly Regex Svg = new("<svg.*?</svg>", RegexOptions.Singleline);
    static readonly Regex Polyline = new("<polyline [^>]*points='([^']*)'");
    static readonly Regex Circle = new("<circle cx=([-0-9.]+) cy=([-0-9.]+) [^>]*><title>([^<]*)</title>");
    static readonly Regex Text = new("<text[^>]*>([^<]*)</text>");

    static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    public static IReadOnlyList<SvgChart> All(string html) => Svg.Matches(html).Select(m => Parse(m.Value)).ToList();

    /// <summary>The charts that draw at least one line.</summary>
    public static IReadOnlyList<SvgChart> WithLines(string html) => All(html).Where(c => c.Lines.Count > 0).ToList();

    static SvgChart Parse(string svg) => new(
        Polyline.Matches(svg).Select(m => (IReadOnlyList<(double, double)>)m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split(',')).Select(p => (D(p[0]), D(p[1]))).ToList()).ToList(),
        Circle.Matches(svg).Select(m => new SvgPoint(D(m.Groups[1].Value), D(m.Groups[2].Value), WebUtility.HtmlDecode(m.Groups[3].Value))).ToList(),
        Text.Matches(svg).Select(m => WebUtility.HtmlDecode(m.Groups[1].Value)).ToList());

    /// <summary>The points whose title starts with "<paramref name="series"/>: ", in drawing order.</summary>
    public IReadOnlyList<SvgPoint> PointsOf(string series) => Points.Where(p => p.Title.StartsWith(series + ": ")).ToList();
}

public sealed record SvgPoint(double X, double Y, string Title);

/// <summary>A horizontal bar of a report's bar chart: its label, drawn length in pixels and value label.</summary>
public sealed record SvgBar(string Label, double Length, string Value)
{
    static readonly Regex Bar = new("<text [^>]*>([^<]*)</text><rect x=[0-9]+ y=[0-9.]+ width=([0-9.]+) height=13 [^>]*/><text [^>]*>([^<]*)</text>");

    /// <summary>Every bar of the page, in drawing order.</summary>
    public static IReadOnlyList<SvgBar> All(string html) => Bar.Matches(html)
        .Select(m => new SvgBar(WebUtility.HtmlDecode(m.Groups[1].Value), double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), WebUtility.HtmlDecode(m.Groups[3].Value)))
        .ToList();
}
