using static TorchSharp.torch;

namespace PeftSharp.Data;

/// <summary>
/// A labelled image collection, whatever it was read from. Entries are decoded on demand; <see cref="DataLoader"/>
/// decodes each one once and caches it. Implementations must allow <see cref="ReadImage"/> from several threads.
/// </summary>
public abstract class ImageDataset
{
    protected ImageDataset(string source, int numClasses, IReadOnlyList<string>? classNames, bool skipBad,
        IReadOnlyList<SkippedEntry> skipped)
    {
        if (classNames != null && classNames.Count != numClasses)
            throw new ArgumentException($"{classNames.Count} class names for {numClasses} classes", nameof(classNames));
        Source = source;
        NumClasses = numClasses;
        ClassNames = classNames;
        SkipBad = skipBad;
        Skipped = skipped;
    }

    /// <summary>Where the data came from, for messages (a list file, a folder, a pair of IDX files).</summary>
    public string Source { get; }
    public abstract int Count { get; }
    public int NumClasses { get; }
    /// <summary>Class names indexed by label, when the source names them; otherwise null.</summary>
    public IReadOnlyList<string>? ClassNames { get; }
    /// <summary>Whether bad entries are skipped and reported instead of thrown (the loader follows this too).</summary>
    public bool SkipBad { get; }
    /// <summary>Entries left out while reading, in file order (empty unless <see cref="SkipBad"/>).</summary>
    public IReadOnlyList<SkippedEntry> Skipped { get; }

    public abstract int Label(int index);

    /// <summary>The file entry <paramref name="index"/> is read from, where it has one (null for images held in a
    /// container file such as IDX).</summary>
    public virtual string? EntryPath(int index) => null;

    /// <summary>Decodes entry <paramref name="index"/>; bad data is a <see cref="PeftSharpException"/> naming its file and line.</summary>
    public RgbImage ReadImage(int index)
    {
        if (TryReadImage(index, out var image, out var problem)) return image!;
        throw new PeftSharpException(problem!.Message);
    }

    /// <summary>Decodes entry <paramref name="index"/>, reporting bad data in <paramref name="problem"/> instead of throwing.</summary>
    public abstract bool TryReadImage(int index, out RgbImage? image, out SkippedEntry? problem);

    /// <summary>The image as float32 [3,H,W] in [0,1] (the caller owns the tensor) and its label.</summary>
    public (Tensor Image, int Label) this[int index]
    {
        get
        {
            CheckIndex(index);
            return (ReadImage(index).ToFloatTensor(), Label(index));
        }
    }

    protected void CheckIndex(int index)
    {
        if ((uint)index >= (uint)Count)
            throw new ArgumentOutOfRangeException(nameof(index), $"index {index} outside {Source} ({Count} entries)");
    }

    public override string ToString() => $"{Source} ({Count} images, {NumClasses} classes)";
}
