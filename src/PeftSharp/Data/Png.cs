using System.Runtime.InteropServices;
using SkiaSharp;

namespace PeftSharp.Data;

/// <summary>PNG encoding with SkiaSharp: gray pixels (one byte each) as 8-bit gray, RGB pixels (three bytes each) as
/// opaque RGB.</summary>
public static class Png
{
    public static byte[] Encode(int width, int height, bool gray, byte[] pixels)
    {
        pixels = gray ? pixels : ToRgba(pixels);
        var info = new SKImageInfo(width, height, gray ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Opaque);
        var handle = GCHandle.Alloc(pixels, GCHandleType.Pinned);
        try
        {
            using var pixmap = new SKPixmap(info, handle.AddrOfPinnedObject(), info.RowBytes);
            using var data = pixmap.Encode(SKEncodedImageFormat.Png, 100)
                ?? throw new InvalidOperationException($"Skia could not encode a {width}×{height} PNG");
            return data.ToArray();
        }
        finally { handle.Free(); }
    }

    static byte[] ToRgba(byte[] rgb)
    {
        var rgba = new byte[rgb.Length / 3 * 4];
        for (int p = 0, n = rgb.Length / 3; p < n; p++)
        {
            rgba[4 * p] = rgb[3 * p];
            rgba[4 * p + 1] = rgb[3 * p + 1];
            rgba[4 * p + 2] = rgb[3 * p + 2];
            rgba[4 * p + 3] = 255;
        }
        return rgba;
    }
}
