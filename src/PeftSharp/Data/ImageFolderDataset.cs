namespace PeftSharp.Data;

/// <summary>
/// A folder with one sub-folder per class, like torchvision's ImageFolder: class folders sorted by name (ordinal)
/// give labels 0, 1, …; images are the files below each class folder (recursively) with an extension in
/// <see cref="ImageDecoder.ImageExtensions"/> (any case); other files are ignored.
/// </summary>
public sealed class ImageFolderDataset : ImageDataset
{
    readonly (string Path, int Label)[] _entries;

    ImageFolderDataset(string root, (string, int)[] entries, IReadOnlyList<string> classNames, bool skipBad,
        IReadOnlyList<SkippedEntry> skipped)
        : base($"image folder {root}", classNames.Count, classNames, skipBad, skipped)
    {
        Root = root;
        _entries = entries;
    }

    public string Root { get; }
    public override int Count => _entries.Length;

    /// <summary>
    /// Scans <paramref name="root"/>. A missing root, no class folders, or a class folder without images throws a
    /// <see cref="PeftSharpException"/> naming the folder; with <paramref name="skipBad"/> an empty class keeps its
    /// label and is listed in <see cref="ImageDataset.Skipped"/>.
    /// </summary>
    /// <param name="classNames">The classes of another split (a test/ folder read with train/'s classes): a class
    /// folder not among them is an error, and labels follow their order; null: the class folders found here.</param>
    public static ImageFolderDataset Open(string root, bool skipBad = false, IReadOnlyList<string>? classNames = null)
    {
        root = Path.GetFullPath(root).TrimEnd(Path.DirectorySeparatorChar);
        if (!Directory.Exists(root))
            throw new PeftSharpException($"{root}: image folder not found; expected one sub-folder of images per class");
        // Hidden folders (.git, .thumbnails) are not classes.
        var classDirs = Directory.GetDirectories(root).Where(d => !Path.GetFileName(d).StartsWith('.')).Order(StringComparer.Ordinal).ToArray();
        if (classDirs.Length == 0)
            throw new PeftSharpException($"{root}: no class sub-folders; expected one sub-folder of images per class");
        if (classNames != null)
            return OpenWithClasses(root, classDirs, classNames, skipBad);

        var skipped = new List<SkippedEntry>();
        var entries = new List<(string, int)>();
        for (int label = 0; label < classDirs.Length; label++)
        {
            var images = ImagesBelow(classDirs[label]);
            if (images.Count == 0)
                DataErrors.Report(skipBad, skipped, classDirs[label], null,
                    $"class folder has no images; expected files ending in {string.Join(", ", ImageDecoder.ImageExtensions)}");
            entries.AddRange(images.Select(path => (path, label)));
        }
        var names = classDirs.Select(Path.GetFileName).Select(n => n!).ToArray();
        return new ImageFolderDataset(root, entries.ToArray(), names, skipBad, skipped);
    }

    static ImageFolderDataset OpenWithClasses(string root, string[] classDirs, IReadOnlyList<string> classNames, bool skipBad)
    {
        var entries = new List<(string, int)>();
        foreach (var dir in classDirs)
        {
            string name = Path.GetFileName(dir);
            int label = classNames.ToList().IndexOf(name);
            if (label < 0)
                throw new PeftSharpException($"{dir}: class '{name}' is not among the training classes ({string.Join(", ", classNames)})");
            entries.AddRange(ImagesBelow(dir).Select(path => (path, label)));
        }
        if (entries.Count == 0)
            throw new PeftSharpException($"{root}: no images in its class folders; expected files ending in {string.Join(", ", ImageDecoder.ImageExtensions)}");
        return new ImageFolderDataset(root, entries.ToArray(), classNames, skipBad, new List<SkippedEntry>());
    }

    static List<string> ImagesBelow(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => ImageDecoder.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(StringComparer.Ordinal)
            .ToList();

    public override int Label(int index)
    {
        CheckIndex(index);
        return _entries[index].Label;
    }

    public override string? EntryPath(int index) => ImagePath(index);

    public string ImagePath(int index)
    {
        CheckIndex(index);
        return _entries[index].Path;
    }

    public override bool TryReadImage(int index, out RgbImage? image, out SkippedEntry? problem)
    {
        CheckIndex(index);
        string path = _entries[index].Path;
        if (ImageDecoder.TryDecode(path, out image, out string? error))
        {
            problem = null;
            return true;
        }
        problem = new SkippedEntry(path, null, error!);
        return false;
    }
}
