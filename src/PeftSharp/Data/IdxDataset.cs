using System.Buffers.Binary;
using System.IO.Compression;

namespace PeftSharp.Data;

/// <summary>
/// The IDX format of MNIST and Fashion-MNIST: an images file (magic 0x00000803, u8 [N,H,W]) and a labels file
/// (magic 0x00000801, u8 [N]), big-endian header, optionally gzipped (recognised by content, not by name).
/// </summary>
public sealed class IdxDataset : ImageDataset
{
    public const uint ImagesMagic = 0x00000803, LabelsMagic = 0x00000801;

    readonly byte[] _pixels; // N × H × W, as in the file
    readonly byte[] _labels;
    readonly int[] _items;   // indices of the items kept (all, unless skip-bad left some out)

    IdxDataset(string imagesPath, string labelsPath, byte[] pixels, byte[] labels, int[] items, int height, int width,
        int numClasses, IReadOnlyList<string>? classNames, bool skipBad, IReadOnlyList<SkippedEntry> skipped)
        : base($"IDX images {imagesPath} with labels {labelsPath}", numClasses, classNames, skipBad, skipped)
    {
        ImagesPath = imagesPath;
        LabelsPath = labelsPath;
        _pixels = pixels;
        _labels = labels;
        _items = items;
        Height = height;
        Width = width;
    }

    public string ImagesPath { get; }
    public string LabelsPath { get; }
    public int Height { get; }
    public int Width { get; }
    public override int Count => _items.Length;

    /// <summary>
    /// Reads both files. Bad magic, truncation, extra bytes and an image/label count mismatch throw a
    /// <see cref="PeftSharpException"/> naming the file and byte offset. The number of classes is
    /// <paramref name="numClasses"/>, else the number of <paramref name="classNames"/>, else the largest label + 1;
    /// labels beyond a declared number throw, or with <paramref name="skipBad"/> are left out and reported.
    /// </summary>
    public static IdxDataset Open(string imagesPath, string labelsPath, int? numClasses = null,
        IReadOnlyList<string>? classNames = null, bool skipBad = false)
    {
        imagesPath = Path.GetFullPath(imagesPath);
        labelsPath = Path.GetFullPath(labelsPath);
        var images = IdxFile.Read(imagesPath, ImagesMagic, "unsigned-byte images [N,H,W]");
        var labels = IdxFile.Read(labelsPath, LabelsMagic, "unsigned-byte labels [N]");
        int count = images.Dims[0], height = images.Dims[1], width = images.Dims[2];
        if (labels.Dims[0] != count)
            throw DataErrors.Error(labelsPath, null,
                $"header declares {labels.Dims[0]} labels (byte 4) but {imagesPath} declares {count} images; expected equal counts");

        int classes = numClasses ?? classNames?.Count ?? (count == 0 ? 0 : labels.Data.Max() + 1);
        if (classes <= 0 && count > 0) throw new PeftSharpException($"{labelsPath}: number of classes must be positive, got {classes}");
        if (classNames != null && classNames.Count != classes)
            throw new PeftSharpException($"{labelsPath}: {classNames.Count} class names given for {classes} classes");

        var skipped = new List<SkippedEntry>();
        var items = new List<int>(count);
        for (int i = 0; i < count; i++)
        {
            if (labels.Data[i] < classes) items.Add(i);
            else DataErrors.Report(skipBad, skipped, labelsPath, null,
                $"byte {labels.HeaderBytes + i} (item {i}): label {labels.Data[i]} out of range; expected 0..{classes - 1} ({classes} classes)");
        }
        return new IdxDataset(imagesPath, labelsPath, images.Data, labels.Data, items.ToArray(), height, width, classes,
            classNames, skipBad, skipped);
    }

    public override int Label(int index)
    {
        CheckIndex(index);
        return _labels[_items[index]];
    }

    public override bool TryReadImage(int index, out RgbImage? image, out SkippedEntry? problem)
    {
        CheckIndex(index);
        int size = Height * Width;
        image = RgbImage.FromGray(Width, Height, _pixels.AsSpan(_items[index] * size, size));
        problem = null;
        return true;
    }
}

/// <summary>Reads one IDX file of unsigned bytes, checking its header against the data it holds.</summary>
internal static class IdxFile
{
    public sealed record Contents(int[] Dims, byte[] Data, int HeaderBytes);

    public static Contents Read(string path, uint expectedMagic, string what)
    {
        byte[] bytes = ReadMaybeGzipped(path);
        int ndims = (int)(expectedMagic & 0xFF);
        if (bytes.Length < 4)
            throw DataErrors.Error(path, null, $"truncated: {bytes.Length} bytes, expected at least the 4-byte IDX magic 0x{expectedMagic:X8}");
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        if (magic != expectedMagic)
            throw DataErrors.Error(path, null, $"bad magic 0x{magic:X8} at byte 0; expected 0x{expectedMagic:X8} (IDX {what})");
        int headerBytes = 4 + 4 * ndims;
        if (bytes.Length < headerBytes)
            throw DataErrors.Error(path, null, $"truncated header: {bytes.Length} bytes, expected {headerBytes} (magic and {ndims} dimension sizes)");

        var dims = new int[ndims];
        long expectedData = 1;
        for (int d = 0; d < ndims; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * d));
            if (dims[d] < 0 || (d > 0 && dims[d] == 0))
                throw DataErrors.Error(path, null, $"dimension {d} at byte {4 + 4 * d} is {dims[d]}; expected a positive size");
            expectedData *= dims[d];
        }
        long actualData = bytes.LongLength - headerBytes;
        if (actualData < expectedData)
            throw DataErrors.Error(path, null,
                $"truncated: header declares {string.Join("×", dims)} = {expectedData} data bytes, file has {actualData} after the {headerBytes}-byte header");
        if (actualData > expectedData)
            throw DataErrors.Error(path, null,
                $"{actualData - expectedData} unexpected bytes after the {expectedData} data bytes the header ({string.Join("×", dims)}) declares");
        return new Contents(dims, bytes[headerBytes..], headerBytes);
    }

    /// <summary>Gzip is recognised by its 1F 8B signature, so "*.gz" and plain files both work whatever their names.</summary>
    static byte[] ReadMaybeGzipped(string path)
    {
        if (!File.Exists(path)) throw DataErrors.Error(path, null, "IDX file not found");
        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length < 2 || raw[0] != 0x1F || raw[1] != 0x8B) return raw;
        try
        {
            using var gzip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            gzip.CopyTo(output);
            return output.ToArray();
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw DataErrors.Error(path, null, $"corrupt gzip data ({e.Message}); expected a gzipped IDX file");
        }
    }
}
