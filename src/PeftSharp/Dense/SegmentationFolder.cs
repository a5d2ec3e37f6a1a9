namespace PeftSharp.Dense;

/// <summary>
/// A semantic-segmentation split in the ADE20K / mmsegmentation folder layout:
/// <c>images/&lt;split&gt;/NAME.jpg|png</c>, <c>annotations/&lt;split&gt;/NAME.png</c> (one 8-bit PNG of class indices per
/// image, gray or palette as Pascal VOC's; 255 = ignore) and <c>classes.txt</c> (line i names class i). Opening reads
/// and checks every pair: an image without a label, a label without an image, a label of another size or an index
/// beyond the classes is an error naming the file.
/// </summary>
public sealed class SegmentationFolder
{
    public const byte Ignore = 255;
    public const string ClassesFile = "classes.txt", ImagesFolder = "images", LabelsFolder = "annotations";

    SegmentationFolder(string root, string split, string[] classes, int size, string[] names, byte[][] pixels, byte[][] labels)
    {
        Root = root;
        Split = split;
        ClassNames = classes;
        Size = size;
        Names = names;
        Pixels = pixels;
        Labels = labels;
    }

    public string Root { get; }
    public string Split { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public int NumClasses => ClassNames.Count;
    /// <summary>Side of the square images and labels (the model's input size).</summary>
    public int Size { get; }
    /// <summary>File stems, sorted ordinally (the example order).</summary>
    public IReadOnlyList<string> Names { get; }
    /// <summary>Per image, Size×Size×3 RGB bytes.</summary>
    public IReadOnlyList<byte[]> Pixels { get; }
    /// <summary>Per image, Size×Size class indices (255 = ignore).</summary>
    public IReadOnlyList<byte[]> Labels { get; }
    public int Count => Names.Count;

    public static bool Looks(string root) =>
        File.Exists(Path.Combine(root, ClassesFile)) && Directory.Exists(Path.Combine(root, LabelsFolder)) && Directory.Exists(Path.Combine(root, ImagesFolder));

    /// <summary>Reads split <paramref name="split"/>, resized to <paramref name="size"/> (images bilinear, labels nearest).</summary>
    public static SegmentationFolder Open(string root, string split, int size)
    {
        var classes = DenseImages.ReadClassNames(Path.Combine(root, ClassesFile));
        string imageDir = Path.Combine(root, ImagesFolder, split), labelDir = Path.Combine(root, LabelsFolder, split);
        if (!Directory.Exists(labelDir)) throw new PeftSharpException($"{labelDir}: label folder of split '{split}' not found");
        if (!Directory.Exists(imageDir)) throw new PeftSharpException($"{imageDir}: image folder of split '{split}' not found");
        var labelFiles = Directory.EnumerateFiles(labelDir, "*.png").Order(StringComparer.Ordinal).ToArray();
        if (labelFiles.Length == 0) throw new PeftSharpException($"{labelDir}: no label PNGs");
        var images = Directory.EnumerateFiles(imageDir).Where(f => Data.ImageDecoder.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                              .GroupBy(f => Path.GetFileNameWithoutExtension(f)).ToDictionary(g => g.Key, g => g.Order(StringComparer.Ordinal).First());
        var names = labelFiles.Select(Path.GetFileNameWithoutExtension).ToArray()!;
        foreach (var stem in images.Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).Take(1))
            throw new PeftSharpException($"{images[stem]}: image has no label ({Path.Combine(labelDir, stem + ".png")} missing)");
        var pixels = new byte[names.Length][];
        var labels = new byte[names.Length][];
        // Each pair is checked on its own; the first error in file order is the one reported.
        var errors = new string?[names.Length];
        Parallel.For(0, names.Length, i =>
        {
            try { (pixels[i], labels[i]) = ReadPair(labelFiles[i], images.GetValueOrDefault(names[i]!), Path.Combine(imageDir, names[i] + ".jpg"), classes.Length, size); }
            catch (PeftSharpException e) { errors[i] = e.Message; }
        });
        if (errors.FirstOrDefault(e => e != null) is string first) throw new PeftSharpException(first);
        return new SegmentationFolder(root, split, classes, size, names!, pixels, labels);
    }

    static (byte[] Pixels, byte[] Labels) ReadPair(string labelFile, string? imageFile, string expectedImage, int numClasses, int size)
    {
        if (imageFile == null) throw new PeftSharpException($"{labelFile}: label has no image ({expectedImage} or another image extension missing)");
        var (w, h, indices) = IndexPng.Read(labelFile);
        var image = DenseImages.Decode(imageFile, labelFile);
        if (w != image.Width || h != image.Height)
            throw new PeftSharpException($"{labelFile}: label is {w}x{h} but its image {Path.GetFileName(imageFile)} is {image.Width}x{image.Height}");
        for (int p = 0; p < indices.Length; p++)
            if (indices[p] >= numClasses && indices[p] != Ignore)
                throw new PeftSharpException($"{labelFile}: class index {indices[p]} at pixel ({p % w}, {p / w}) is beyond the {numClasses} classes of {ClassesFile} (255 = ignore)");
        return (DenseImages.Resize(image, size), DenseImages.ResizeLabels(indices, w, h, size));
    }
}
