namespace PeftSharp.Data;

/// <summary>
/// Some entries of other datasets, in a given order: the first n images of a split, or two splits one after the other.
/// Nothing is copied; images are decoded from the underlying datasets on demand (the loader caches them as usual).
/// Used by benchmark profiles that shrink the VTAB-1K splits to fit a time budget.
/// </summary>
public sealed class DatasetView : ImageDataset
{
    readonly (ImageDataset Dataset, int Index)[] _entries;

    DatasetView(string source, ImageDataset first, (ImageDataset, int)[] entries)
        : base(source, first.NumClasses, first.ClassNames, first.SkipBad, Array.Empty<SkippedEntry>()) => _entries = entries;

    public override int Count => _entries.Length;
    public override int Label(int index) => _entries[index].Dataset.Label(_entries[index].Index);

    public override string? EntryPath(int index) => _entries[index].Dataset.EntryPath(_entries[index].Index);

    public override bool TryReadImage(int index, out RgbImage? image, out SkippedEntry? problem) =>
        _entries[index].Dataset.TryReadImage(_entries[index].Index, out image, out problem);

    /// <summary>The first <paramref name="count"/> entries of <paramref name="dataset"/> (VTAB lists are shuffled, so a
    /// prefix is a random sample that is the same on every run).</summary>
    public static DatasetView Prefix(ImageDataset dataset, int count)
    {
        if (count <= 0 || count > dataset.Count)
            throw new PeftSharpException($"{dataset.Source}: cannot take the first {count} images of {dataset.Count}; expected 1..{dataset.Count}");
        return new DatasetView($"{dataset.Source} (first {count})", dataset, Enumerable.Range(0, count).Select(i => (dataset, i)).ToArray());
    }

    /// <summary>The entries <paramref name="indices"/> of <paramref name="dataset"/>, in that order (may be empty).</summary>
    public static DatasetView Select(ImageDataset dataset, IEnumerable<int> indices, string source) =>
        new(source, dataset, indices.Select(i => (dataset, i)).ToArray());

    /// <summary>The entries of <paramref name="first"/> followed by those of <paramref name="second"/>.</summary>
    public static DatasetView Concat(ImageDataset first, ImageDataset second)
    {
        if (first.NumClasses != second.NumClasses)
            throw new PeftSharpException($"{second.Source}: {second.NumClasses} classes, but {first.Source} has {first.NumClasses}");
        var entries = Enumerable.Range(0, first.Count).Select(i => (first, i))
            .Concat(Enumerable.Range(0, second.Count).Select(i => (second, i))).ToArray();
        return new DatasetView($"{first.Source} + {second.Source}", first, entries);
    }
}
