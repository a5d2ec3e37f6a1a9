using System.Globalization;
using System.Text;
using PeftSharp.Data;
using PeftSharp.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.VisionLanguage;

/// <summary>
/// Image–caption pairs held in memory at one square size (HWC RGB bytes). <see cref="Groups"/> says which pairs
/// describe the same thing: retrieval counts any pair of the same group as a hit, and the contrastive loss treats
/// them as positives. For a classification set, <see cref="Labels"/> and <see cref="ClassPrompts"/> are set and a
/// pair's caption is its class prompt.
/// </summary>
public sealed class CaptionSet
{
    public const string CaptionsFile = "captions.tsv";

    public CaptionSet(string name, int imageSize, IReadOnlyList<byte[]> pixels, IReadOnlyList<string> captions,
                      IReadOnlyList<int>? groups = null, IReadOnlyList<int>? labels = null, IReadOnlyList<string>? classPrompts = null)
    {
        if (pixels.Count != captions.Count) throw new ArgumentException($"{name}: {pixels.Count} images but {captions.Count} captions");
        if (pixels.Count == 0) throw new PeftSharpException($"{name}: no image–caption pairs");
        int perImage = imageSize * imageSize * 3;
        for (int i = 0; i < pixels.Count; i++)
        {
            if (pixels[i].Length != perImage) throw new ArgumentException($"{name}: image {i} has {pixels[i].Length} bytes, expected {perImage}");
            if (string.IsNullOrWhiteSpace(captions[i])) throw new PeftSharpException($"{name}: pair {i} has an empty caption");
        }
        if ((labels == null) != (classPrompts == null)) throw new ArgumentException($"{name}: labels and class prompts go together");
        if (labels != null && labels.Any(l => l < 0 || l >= classPrompts!.Count))
            throw new PeftSharpException($"{name}: a label is outside the {classPrompts!.Count} class prompts");
        Name = name;
        ImageSize = imageSize;
        Pixels = pixels;
        Captions = captions;
        Groups = groups ?? labels ?? GroupsOf(captions);
        Labels = labels;
        ClassPrompts = classPrompts;
    }

    public string Name { get; }
    public int ImageSize { get; }
    public IReadOnlyList<byte[]> Pixels { get; }
    public IReadOnlyList<string> Captions { get; }
    public IReadOnlyList<int> Groups { get; }
    public IReadOnlyList<int>? Labels { get; }
    public IReadOnlyList<string>? ClassPrompts { get; }
    public int Count => Pixels.Count;
    public bool IsClassification => Labels != null;

    /// <summary>Captions that tokenize alike form one group (CLIP's tokenizer lower-cases and collapses spaces).</summary>
    public static int[] GroupsOf(IReadOnlyList<string> captions)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        return captions.Select(c => ClipTextCleaner.Clean(c)).Select(c => ids.TryGetValue(c, out int id) ? id : ids[c] = ids.Count).ToArray();
    }

    /// <summary>A batch of images (count × size × size × 3 bytes, as the pretraining sources render them), one array each.</summary>
    public static byte[][] SplitImages(byte[] pixels, int imageSize)
    {
        int perImage = imageSize * imageSize * 3;
        return Enumerable.Range(0, pixels.Length / perImage).Select(i => pixels.AsSpan(i * perImage, perImage).ToArray()).ToArray();
    }

    /// <summary>The pairs at <paramref name="indices"/>, in that order.</summary>
    public CaptionSet Subset(IReadOnlyList<int> indices, string? name = null) =>
        new(name ?? Name, ImageSize, indices.Select(i => Pixels[i]).ToArray(), indices.Select(i => Captions[i]).ToArray(),
            indices.Select(i => Groups[i]).ToArray(), Labels == null ? null : indices.Select(i => Labels[i]).ToArray(), ClassPrompts);

    /// <summary>The images at <paramref name="indices"/> as a normalised float tensor [B, 3, S, S].</summary>
    public Tensor Images(IReadOnlyList<int> indices, Normalization normalization, Device? device = null)
    {
        int perImage = ImageSize * ImageSize * 3;
        var bytes = new byte[indices.Count * perImage];
        for (int i = 0; i < indices.Count; i++) Pixels[indices[i]].CopyTo(bytes, i * perImage);
        using var scope = NewDisposeScope();
        var hwc = tensor(bytes, new long[] { indices.Count, ImageSize, ImageSize, 3 });
        var images = Transforms.NormalizeInPlace(hwc.permute(0, 3, 1, 2).to_type(ScalarType.Float32).div_(255f), normalization);
        return (device == null ? images : images.to(device)).MoveToOuterDisposeScope();
    }

    /// <summary>Writes DIR/captions.tsv (image, caption) and one PNG per pair.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var tsv = new StringBuilder("image\tcaption\n");
        for (int i = 0; i < Count; i++)
        {
            string file = $"{i:D5}.png";
            File.WriteAllBytes(Path.Combine(directory, file), Png.Encode(ImageSize, ImageSize, gray: false, Pixels[i]));
            tsv.Append(file).Append('\t').Append(Captions[i]).Append('\n');
        }
        File.WriteAllText(Path.Combine(directory, CaptionsFile), tsv.ToString());
    }

    /// <summary>
    /// Reads a caption folder: DIR/captions.tsv with a header naming the columns 'image' (a path relative to DIR)
    /// and 'caption', one pair per line; images are decoded and resized to <paramref name="imageSize"/>. A missing
    /// column, a short line, an empty caption or an unreadable image is an error naming the file and line.
    /// </summary>
    public static CaptionSet Load(string directory, int imageSize)
    {
        string file = Path.Combine(directory, CaptionsFile);
        if (!File.Exists(file)) throw new PeftSharpException($"{file}: caption file not found (expected a tab-separated file with columns 'image' and 'caption')");
        var lines = File.ReadAllLines(file);
        if (lines.Length == 0) throw new PeftSharpException($"{file}: empty; expected a header line 'image<TAB>caption'");
        var header = lines[0].Split('\t').Select(h => h.Trim()).ToList();
        int imageColumn = header.IndexOf("image"), captionColumn = header.IndexOf("caption");
        foreach (var (column, index) in new[] { ("image", imageColumn), ("caption", captionColumn) })
            if (index < 0) throw new PeftSharpException($"{file}: line 1: no '{column}' column (header has: {string.Join(", ", header)})");
        var pixels = new List<byte[]>();
        var captions = new List<string>();
        for (int n = 1; n < lines.Length; n++)
        {
            if (lines[n].Length == 0) continue;
            var cells = lines[n].Split('\t');
            string where = $"{file}: line {n + 1}";
            if (cells.Length <= Math.Max(imageColumn, captionColumn))
                throw new PeftSharpException($"{where}: {cells.Length} column{(cells.Length == 1 ? "" : "s")}, expected {header.Count} ({string.Join(", ", header)})");
            string caption = cells[captionColumn].Trim();
            if (caption.Length == 0) throw new PeftSharpException($"{where}: empty caption");
            pixels.Add(ReadImage(Path.Combine(directory, cells[imageColumn].Trim()), imageSize, where));
            captions.Add(caption);
        }
        if (pixels.Count == 0) throw new PeftSharpException($"{file}: no pairs after the header");
        return new CaptionSet(Path.GetFileName(Path.GetFullPath(directory).TrimEnd('/')), imageSize, pixels, captions);
    }

    static byte[] ReadImage(string path, int size, string where)
    {
        if (!ImageDecoder.TryDecode(path, out var image, out string? error)) throw new PeftSharpException($"{where}: image {path}: {error}");
        return ToSquare(image!, size);
    }

    /// <summary>An image resized (bicubic, antialiased) to size × size, as HWC bytes.</summary>
    public static byte[] ToSquare(RgbImage image, int size)
    {
        if (image.Width == size && image.Height == size) return image.Pixels;
        using var scope = NewDisposeScope();
        var chw = tensor(image.Pixels, new long[] { image.Height, image.Width, 3 }).permute(2, 0, 1).to_type(ScalarType.Float32).div_(255f);
        var resized = Transforms.Resize(chw, size).mul_(255f).round_().to_type(ScalarType.Byte).permute(1, 2, 0).contiguous();
        return resized.data<byte>().ToArray();
    }

    /// <summary>Token ids [N, context] of <paramref name="texts"/>, truncated as open_clip truncates (the last kept
    /// position becomes end-of-text); <paramref name="truncated"/> counts the texts that were cut.</summary>
    public static Tensor Tokenize(IReadOnlyList<string> texts, int contextLength, out int truncated) =>
        ClipTokenizer.Default.TokenizeToTensor(texts, contextLength, out truncated);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Name}: {Count} pairs at {ImageSize}×{ImageSize}");
}
