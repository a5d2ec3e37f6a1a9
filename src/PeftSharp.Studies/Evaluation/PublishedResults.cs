using System.Globalization;

namespace PeftSharp.Evaluation;

/// <summary>One method's VTAB-1K results in the unifying study (ViT-B/16, ImageNet-21k), percent.</summary>
public sealed record PublishedRow(string Method, double Natural, double Specialized, double Structured, double MeanOfGroups, double Mean19);

/// <summary>One method's row in V-PETL Bench's VTAB-1K table (ViT-B/16, ImageNet-21k): the plain 19-task mean (%),
/// the trainable parameters as printed ("0.22M") and PPT (null where they print none).</summary>
public sealed record VPetlRow(string Method, string Name, double Mean19, string Params, double? Ppt);

/// <summary>The published numbers shipped in data/published (see its README for provenance and caveats).</summary>
public static class PublishedResults
{
    static readonly Lazy<IReadOnlyDictionary<string, PublishedRow>> Study = new(LoadStudy);
    static readonly Lazy<IReadOnlyDictionary<string, VPetlRow>> VPetlRows = new(LoadVPetl);

    public static IReadOnlyDictionary<string, PublishedRow> UnifyingStudy => Study.Value;

    /// <summary>V-PETL Bench's rows by PeftSharp method id. Its mean is over the 19 tasks (not of the group means) and
    /// its trainers keep the best test epoch, unlike PeftSharp's protocol (val200 selection, last epoch).</summary>
    public static IReadOnlyDictionary<string, VPetlRow> VPetl => VPetlRows.Value;

    /// <summary>What every V-PETL figure must be read with.</summary>
    public const string VPetlCaveat = "V-PETL Bench's VTAB-1K mean is the plain mean of 19 tasks (group means come out about 2.3 points higher) and its trainers keep the best test epoch; PeftSharp selects on val200 and reports the last epoch's test";

    static IEnumerable<string[]> Rows(string resource)
    {
        using var stream = typeof(PublishedResults).Assembly.GetManifestResourceStream($"PeftSharp.Published.{resource}")
            ?? throw new InvalidOperationException($"published results resource {resource} missing from the assembly");
        using var reader = new StreamReader(stream);
        reader.ReadLine();
        while (reader.ReadLine() is string line)
            if (line.Length > 0) yield return line.Split('\t');
    }

    static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    static IReadOnlyDictionary<string, PublishedRow> LoadStudy() =>
        Rows("unifying-study-vtab1k.tsv").ToDictionary(f => f[0], f => new PublishedRow(f[0], D(f[1]), D(f[2]), D(f[3]), D(f[4]), D(f[5])));

    static IReadOnlyDictionary<string, VPetlRow> LoadVPetl() =>
        Rows("vpetl-vtab1k.tsv").ToDictionary(f => f[0], f => new VPetlRow(f[0], f[1], D(f[2]), f[3], f.Length > 4 && f[4].Length > 0 ? D(f[4]) : null));
}
