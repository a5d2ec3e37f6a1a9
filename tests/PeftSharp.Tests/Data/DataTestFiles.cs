using SkiaSharp;

namespace PeftSharp.Tests.Data;

/// <summary>A temporary folder deleted with the test.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Path = Directory.CreateTempSubdirectory("peftsharp-data-").FullName;

    public string Path { get; }

    public string File(string relative)
    {
        string full = System.IO.Path.Combine(Path, relative);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        return full;
    }

    public string WriteText(string relative, string text)
    {
        string full = File(relative);
        System.IO.File.WriteAllText(full, text);
        return full;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Writes small test images with SkiaSharp.</summary>
public static class TestImages
{
    public static string WritePng(string path, int width, int height, Func<int, int, (byte R, byte G, byte B)> colour) =>
        Write(path, Rgb(width, height, colour), SKEncodedImageFormat.Png, 100);

    public static string WriteSolidPng(string path, int width, int height, byte r, byte g, byte b) =>
        WritePng(path, width, height, (_, _) => (r, g, b));

    public static string WriteJpeg(string path, int width, int height, Func<int, int, (byte R, byte G, byte B)> colour, int quality = 100) =>
        Write(path, Rgb(width, height, colour), SKEncodedImageFormat.Jpeg, quality);

    /// <summary>An 8-bit grayscale image (one channel in the file).</summary>
    public static string WriteGray(string path, int width, int height, Func<int, int, byte> value, SKEncodedImageFormat format)
    {
        var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque));
        var pixels = new byte[width * height];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                pixels[y * width + x] = value(x, y);
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        return Write(path, bitmap, format, 100);
    }

    /// <summary>A PNG with an alpha channel, stored unpremultiplied.</summary>
    public static string WriteRgbaPng(string path, int width, int height, byte r, byte g, byte b, byte a)
    {
        var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var pixels = new byte[width * height * 4];
        for (int p = 0; p < width * height; p++)
        {
            pixels[4 * p] = r;
            pixels[4 * p + 1] = g;
            pixels[4 * p + 2] = b;
            pixels[4 * p + 3] = a;
        }
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        return Write(path, bitmap, SKEncodedImageFormat.Png, 100);
    }

    static SKBitmap Rgb(int width, int height, Func<int, int, (byte R, byte G, byte B)> colour)
    {
        var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var (r, g, b) = colour(x, y);
                bitmap.SetPixel(x, y, new SKColor(r, g, b));
            }
        return bitmap;
    }

    static string Write(string path, SKBitmap bitmap, SKEncodedImageFormat format, int quality)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (bitmap)
        using (var data = bitmap.Encode(format, quality))
        using (var file = File.Create(path))
        {
            Assert.NotNull(data);
            data.SaveTo(file);
        }
        return path;
    }
}
