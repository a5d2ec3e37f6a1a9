using System.Buffers.Binary;
using System.IO.Compression;

namespace PeftSharp.Dense;

/// <summary>
/// The class indices of a label PNG as stored, not as colours: 8-bit grayscale (ADE20K's annotations) or 8-bit
/// palette (Pascal VOC's SegmentationClass, whose palette only colours the indices). An image decoder would turn a
/// palette image into RGB and lose the indices, so the chunks are read here: IHDR, the zlib stream of IDAT, PNG's
/// five row filters. Interlaced, 16-bit and colour images are refused with the reason.
/// </summary>
public static class IndexPng
{
    static ReadOnlySpan<byte> Signature => [137, 80, 78, 71, 13, 10, 26, 10];

    /// <summary>Width, height and one byte per pixel, row-major.</summary>
    public static (int Width, int Height, byte[] Indices) Read(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) { throw new PeftSharpException($"{path}: cannot read the label image ({e.Message})"); }
        return Read(bytes, path);
    }

    public static (int Width, int Height, byte[] Indices) Read(byte[] bytes, string where)
    {
        if (bytes.Length < 8 || !bytes.AsSpan(0, 8).SequenceEqual(Signature))
            throw new PeftSharpException($"{where}: not a PNG file (label images are PNGs of class indices)");
        int width = 0, height = 0, colourType = -1;
        using var idat = new MemoryStream();
        for (int at = 8; at + 8 <= bytes.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(bytes, at + 4, 4);
            if (length < 0 || at + 12 + length > bytes.Length) throw new PeftSharpException($"{where}: truncated PNG chunk '{type}'");
            var data = bytes.AsSpan(at + 8, length);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                int depth = data[8];
                colourType = data[9];
                if (depth != 8 || colourType is not (0 or 3))
                    throw new PeftSharpException($"{where}: label PNG is bit depth {depth}, colour type {colourType}; expected 8-bit grayscale or 8-bit palette (one class index per pixel)");
                if (data[12] != 0) throw new PeftSharpException($"{where}: interlaced label PNGs are not supported; save it without interlacing");
            }
            else if (type == "IDAT") idat.Write(data);
            else if (type == "IEND") break;
            at += 12 + length;
        }
        if (colourType < 0 || width <= 0 || height <= 0) throw new PeftSharpException($"{where}: PNG without a valid IHDR chunk");
        var raw = new byte[(long)(width + 1) * height];
        idat.Position = 0;
        using (var z = new ZLibStream(idat, CompressionMode.Decompress))
        {
            int read = 0;
            try { while (read < raw.Length && z.Read(raw, read, raw.Length - read) is int n and > 0) read += n; }
            catch (InvalidDataException) { throw new PeftSharpException($"{where}: corrupt PNG image data"); }
            if (read < raw.Length) throw new PeftSharpException($"{where}: PNG image data ends early ({read} of {raw.Length} bytes)");
        }
        return (width, height, Unfilter(raw, width, height, where));
    }

    /// <summary>PNG's per-row filters for one byte per pixel (None, Sub, Up, Average, Paeth).</summary>
    static byte[] Unfilter(byte[] raw, int width, int height, string where)
    {
        var pixels = new byte[width * height];
        for (int y = 0; y < height; y++)
        {
            int filter = raw[y * (width + 1)];
            var row = raw.AsSpan(y * (width + 1) + 1, width);
            var outRow = pixels.AsSpan(y * width, width);
            for (int x = 0; x < width; x++)
            {
                int a = x > 0 ? outRow[x - 1] : 0, b = y > 0 ? pixels[(y - 1) * width + x] : 0;
                int c = x > 0 && y > 0 ? pixels[(y - 1) * width + x - 1] : 0;
                int predictor = filter switch
                {
                    0 => 0, 1 => a, 2 => b, 3 => (a + b) / 2,
                    4 => Paeth(a, b, c),
                    _ => throw new PeftSharpException($"{where}: PNG row {y} has unknown filter type {filter}"),
                };
                outRow[x] = (byte)(row[x] + predictor);
            }
        }
        return pixels;
    }

    static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
