namespace PeftSharp.Data;

/// <summary>
/// One VTAB-1K task in the common release layout: a folder with the images and the lists train800.txt, val200.txt,
/// train800val200.txt and test.txt ("relative/path label" per line), plus an optional classes.txt (one name per line).
/// </summary>
public sealed class VtabTask
{
    /// <summary>The split names, each read from "&lt;name&gt;.txt".</summary>
    public static readonly IReadOnlyList<string> SplitNames = ["train800", "val200", "train800val200", "test"];
    public const string ClassNamesFile = "classes.txt";

    readonly Dictionary<string, ListFileDataset> _splits;

    VtabTask(string directory, int numClasses, IReadOnlyList<string>? classNames, Dictionary<string, ListFileDataset> splits)
    {
        Directory = directory;
        NumClasses = numClasses;
        ClassNames = classNames;
        _splits = splits;
    }

    public string Directory { get; }
    /// <summary>The task's folder name (e.g. "cifar", "dtd").</summary>
    public string Name => Path.GetFileName(Directory);
    /// <summary>From classes.txt when present, else the largest label in any list + 1.</summary>
    public int NumClasses { get; }
    public IReadOnlyList<string>? ClassNames { get; }

    public ListFileDataset Train800 => _splits["train800"];
    public ListFileDataset Val200 => _splits["val200"];
    public ListFileDataset Train800Val200 => _splits["train800val200"];
    public ListFileDataset Test => _splits["test"];

    /// <summary>The split called <paramref name="name"/> (one of <see cref="SplitNames"/>).</summary>
    public ListFileDataset Split(string name) =>
        _splits.TryGetValue(name, out var split) ? split
            : throw new PeftSharpException($"{Directory}: unknown VTAB split '{name}'; expected one of {string.Join(", ", SplitNames)}");

    /// <summary>
    /// Reads all four lists. Missing lists, malformed lines, negative labels, labels beyond classes.txt and images
    /// the folder lacks throw a <see cref="PeftSharpException"/> naming the list and line; with
    /// <paramref name="skipBad"/> bad entries are left out and listed in each split's Skipped.
    /// </summary>
    public static VtabTask Open(string directory, bool skipBad = false)
    {
        directory = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        if (!System.IO.Directory.Exists(directory))
            throw new PeftSharpException($"{directory}: VTAB task folder not found; expected a folder with {ListNames()}");

        var parsed = SplitNames.ToDictionary(name => name, name =>
        {
            var skipped = new List<SkippedEntry>();
            return (Entries: ListFile.Read(ListPath(directory, name), skipBad, skipped), Skipped: skipped);
        });

        string classesPath = Path.Combine(directory, ClassNamesFile);
        IReadOnlyList<string>? classNames = File.Exists(classesPath) ? ListFile.ReadClassNames(classesPath) : null;
        // Without classes.txt the classes are the labels the training lists use: a label seen only in test.txt is an
        // error, not a silently larger head.
        int numClasses = classNames?.Count
            ?? parsed.Where(p => p.Key != "test").SelectMany(p => p.Value.Entries).Select(e => e.Label).DefaultIfEmpty(-1).Max() + 1;

        var splits = parsed.ToDictionary(p => p.Key, p => ListFileDataset.Create(ListPath(directory, p.Key),
            $"VTAB task {Path.GetFileName(directory)} split {p.Key} ({ListPath(directory, p.Key)})",
            p.Value.Entries, numClasses, classNames, skipBad, p.Value.Skipped, classNames == null ? "the training lists" : null));
        return new VtabTask(directory, numClasses, classNames, splits);
    }

    static string ListPath(string directory, string split) => Path.Combine(directory, split + ".txt");
    static string ListNames() => string.Join(", ", SplitNames.Select(s => s + ".txt"));
}
