using PeftSharp.Data;

namespace PeftSharp.Dense;

/// <summary>Images of a dense task as the model sees them: square <c>Size</c>×<c>Size</c> RGB bytes (HWC). Dense
/// datasets are decoded and checked in full when opened, so a bad file fails before any training.</summary>
internal static class DenseImages
{
    /// <summary>The image at <paramref name="path"/>, or a one-line error naming it (missing, undecodable).</summary>
    public static RgbImage Decode(string path, string listedIn)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{listedIn}: image '{path}' is listed but missing");
        if (!ImageDecoder.TryDecode(path, out var image, out var error)) throw new PeftSharpException($"{path}: {error}");
        return image!;
    }

    /// <summary>Bilinear resize of an RGB image to size×size (half-pixel centres, edges clamped; the identity when
    /// it already has that size). Dense tasks resize whole images, aspect not kept, and scale their labels alike.</summary>
    public static byte[] Resize(RgbImage image, int size)
    {
        if (image.Width == size && image.Height == size) return image.Pixels;
        var output = new byte[size * size * 3];
        double sx = (double)image.Width / size, sy = (double)image.Height / size;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                for (int c = 0; c < 3; c++)
                    output[(y * size + x) * 3 + c] = PixelOps.ClampByte(
                        PixelOps.Sample(image.Pixels, image.Width, image.Height, 3, c, (x + 0.5) * sx, (y + 0.5) * sy));
        return output;
    }

    /// <summary>Nearest-neighbour resize of a label map (class indices are not averaged).</summary>
    public static byte[] ResizeLabels(byte[] labels, int width, int height, int size)
    {
        if (width == size && height == size) return labels;
        var output = new byte[size * size];
        for (int y = 0; y < size; y++)
        {
            int sy = Math.Min(height - 1, (int)((y + 0.5) * height / size));
            for (int x = 0; x < size; x++)
                output[y * size + x] = labels[sy * width + Math.Min(width - 1, (int)((x + 0.5) * width / size))];
        }
        return output;
    }

    /// <summary>Class names, one per line (blank lines not allowed: the line number is the class index).</summary>
    public static string[] ReadClassNames(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: class-name file not found (one class name per line, line i = class index i)");
        var lines = File.ReadAllLines(path);
        int count = lines.Length;
        while (count > 0 && lines[count - 1].Trim().Length == 0) count--;
        for (int i = 0; i < count; i++)
            if (lines[i].Trim().Length == 0) throw new PeftSharpException($"{path} line {i + 1}: empty class name (line i names class index i)");
        if (count < 2) throw new PeftSharpException($"{path}: {count} class names; a segmentation task needs at least two");
        if (count > 255) throw new PeftSharpException($"{path}: {count} class names; label PNGs hold indices 0–254 (255 = ignore)");
        return lines[..count].Select(l => l.Trim()).ToArray();
    }
}
