using System.Globalization;

namespace PeftSharp.Evaluation;

/// <summary>One method's VTAB-1K results in the unifying study (ViT-B/16, ImageNet-21k), percent.</summary>
public sealed record PublishedRow(string Method, double Natural, double Specialized, double Structured, double MeanOfGroups, double Mean19);

/// <summary>The published numbers shipped in data/published (see its README for provenance and caveats).</summary>
public static class PublishedResults
{
    static readonly Lazy<IReadOnlyDictionary<string, PublishedRow>> Study = new(LoadStudy);

    public static IReadOnlyDictionary<string, PublishedRow> UnifyingStudy => Study.Value;

    static IReadOnlyDictionary<string, PublishedRow> LoadStudy()
    {
        using var stream = typeof(PublishedResults).Assembly.GetManifestResourceStream("PeftSharp.Published.unifying-study-vtab1k.tsv")
            ?? throw new InvalidOperationException("published results resource missing from the assembly");
        using var reader = new StreamReader(stream);
        var rows = new Dictionary<string, PublishedRow>();
        reader.ReadLine();
        while (reader.ReadLine() is string line)
        {
            if (line.Length == 0) continue;
            var f = line.Split('\t');
            double D(int i) => double.Parse(f[i], CultureInfo.InvariantCulture);
            rows[f[0]] = new PublishedRow(f[0], D(1), D(2), D(3), D(4), D(5));
        }
        return rows;
    }
}
