using System.Globalization;

namespace PeftSharp.Data;

/// <summary>One line of a list file: an image path (relative to the list's folder) and its integer label.</summary>
internal readonly record struct ListEntry(string RelativePath, int Label, int Line);

/// <summary>Parses "relative/path label" list files (the VTAB-1K release format).</summary>
internal static class ListFile
{
    public const string ExpectedLine = "expected 'relative/path label' with an integer label";

    /// <summary>
    /// Reads every non-blank line. Malformed lines and negative labels throw, or are skipped and reported in
    /// <paramref name="skipped"/> when <paramref name="skipBad"/> is set. A missing or entry-less file always throws.
    /// </summary>
    public static List<ListEntry> Read(string path, bool skipBad, List<SkippedEntry> skipped)
    {
        if (!File.Exists(path))
            throw DataErrors.Error(path, null, $"list file not found; {ExpectedLine} per line");
        var entries = new List<ListEntry>();
        int lineNumber = 0, nonBlank = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNumber++;
            string line = raw.Trim();
            if (line.Length == 0) continue;
            nonBlank++;
            if (TryParse(line, out var entry, out string? problem))
                entries.Add(entry with { Line = lineNumber });
            else
                DataErrors.Report(skipBad, skipped, path, lineNumber, problem!);
        }
        if (nonBlank == 0) throw DataErrors.Error(path, null, $"list file has no entries; {ExpectedLine} per line");
        return entries;
    }

    /// <summary>Splits at the last run of whitespace so that paths may contain spaces.</summary>
    static bool TryParse(string line, out ListEntry entry, out string? problem)
    {
        entry = default;
        int cut = line.LastIndexOfAny([' ', '\t']);
        if (cut < 0)
        {
            problem = $"malformed line '{line}': {ExpectedLine}";
            return false;
        }
        string path = line[..cut].Trim(), labelText = line[(cut + 1)..];
        if (!int.TryParse(labelText, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int label))
        {
            problem = $"malformed line '{line}': label '{labelText}' is not an integer; {ExpectedLine}";
            return false;
        }
        if (label < 0)
        {
            problem = $"label {label} out of range: labels must be 0 or more";
            return false;
        }
        entry = new ListEntry(path, label, 0);
        problem = null;
        return true;
    }

    /// <summary>Reads a class-name file: one name per line, trailing blank lines ignored.</summary>
    public static List<string> ReadClassNames(string path)
    {
        var names = File.ReadAllLines(path).Select(l => l.Trim()).ToList();
        while (names.Count > 0 && names[^1].Length == 0) names.RemoveAt(names.Count - 1);
        int blank = names.FindIndex(n => n.Length == 0);
        if (blank >= 0) throw DataErrors.Error(path, blank + 1, "empty class name; expected one class name per line");
        if (names.Count == 0) throw DataErrors.Error(path, null, "class-name file is empty; expected one class name per line");
        return names;
    }
}
