namespace PeftSharp.Data;

/// <summary>
/// Images named by a list file, one "relative/path label" per line, paths relative to the list's folder. Used for
/// generic lists and for the splits of a <see cref="VtabTask"/>.
/// </summary>
public sealed class ListFileDataset : ImageDataset
{
    readonly ListEntry[] _entries;

    ListFileDataset(string listPath, string root, string source, ListEntry[] entries, int numClasses,
        IReadOnlyList<string>? classNames, bool skipBad, IReadOnlyList<SkippedEntry> skipped)
        : base(source, numClasses, classNames, skipBad, skipped)
    {
        ListPath = listPath;
        Root = root;
        _entries = entries;
    }

    /// <summary>The list file.</summary>
    public string ListPath { get; }
    /// <summary>The folder the image paths are relative to.</summary>
    public string Root { get; }
    public override int Count => _entries.Length;

    /// <summary>
    /// Reads <paramref name="listPath"/>. The number of classes is <paramref name="numClasses"/>, else the number of
    /// <paramref name="classNames"/>, else the largest label + 1. Bad lines, out-of-range labels and missing image
    /// files throw a <see cref="PeftSharpException"/> naming the list and line, or with <paramref name="skipBad"/> are
    /// left out and listed in <see cref="ImageDataset.Skipped"/>.
    /// </summary>
    public static ListFileDataset Open(string listPath, int? numClasses = null, IReadOnlyList<string>? classNames = null,
        bool skipBad = false)
    {
        listPath = Path.GetFullPath(listPath);
        var skipped = new List<SkippedEntry>();
        var entries = ListFile.Read(listPath, skipBad, skipped);
        int classes = numClasses ?? classNames?.Count ?? (entries.Count == 0 ? 0 : entries.Max(e => e.Label) + 1);
        return Create(listPath, $"list {listPath}", entries, classes, classNames, skipBad, skipped);
    }

    /// <summary>Checks labels against <paramref name="numClasses"/> and that every image file exists.</summary>
    /// <param name="classesFrom">Where the number of classes came from when no class names declare it (e.g. "the
    /// training lists"), for the message of a label beyond them.</param>
    internal static ListFileDataset Create(string listPath, string source, List<ListEntry> entries, int numClasses,
        IReadOnlyList<string>? classNames, bool skipBad, List<SkippedEntry> skipped, string? classesFrom = null)
    {
        if (numClasses <= 0 && entries.Count > 0)
            throw new PeftSharpException($"{listPath}: number of classes must be positive, got {numClasses}");
        if (classNames != null && classNames.Count != numClasses)
            throw new PeftSharpException($"{listPath}: {classNames.Count} class names given for {numClasses} classes");
        string root = Path.GetDirectoryName(listPath)!;
        var kept = new List<ListEntry>(entries.Count);
        foreach (var entry in entries)
        {
            if (entry.Label >= numClasses)
                DataErrors.Report(skipBad, skipped, listPath, entry.Line, classesFrom == null
                    ? $"label {entry.Label} out of range: expected 0..{numClasses - 1} ({numClasses} classes)"
                    : $"label {entry.Label} is beyond the {numClasses} classes {classesFrom} use (0..{numClasses - 1}); declare every class in {VtabTask.ClassNamesFile} (one name per line)");
            else if (!File.Exists(Path.Combine(root, entry.RelativePath)))
                DataErrors.Report(skipBad, skipped, listPath, entry.Line,
                    $"image '{entry.RelativePath}' not found in {root}");
            else
                kept.Add(entry);
        }
        skipped.Sort((a, b) => (a.Line ?? 0).CompareTo(b.Line ?? 0));
        return new ListFileDataset(listPath, root, source, kept.ToArray(), numClasses, classNames, skipBad, skipped);
    }

    public override int Label(int index)
    {
        CheckIndex(index);
        return _entries[index].Label;
    }

    public override string? EntryPath(int index) => ImagePath(index);

    /// <summary>Full path of entry <paramref name="index"/>'s image.</summary>
    public string ImagePath(int index)
    {
        CheckIndex(index);
        return Path.Combine(Root, _entries[index].RelativePath);
    }

    /// <summary>1-based line of entry <paramref name="index"/> in <see cref="ListPath"/>.</summary>
    public int LineNumber(int index)
    {
        CheckIndex(index);
        return _entries[index].Line;
    }

    public override bool TryReadImage(int index, out RgbImage? image, out SkippedEntry? problem)
    {
        CheckIndex(index);
        var entry = _entries[index];
        if (ImageDecoder.TryDecode(Path.Combine(Root, entry.RelativePath), out image, out string? error))
        {
            problem = null;
            return true;
        }
        problem = new SkippedEntry(ListPath, entry.Line, $"image '{entry.RelativePath}': {error}");
        return false;
    }
}
