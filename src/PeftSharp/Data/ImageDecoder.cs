using System.Runtime.InteropServices;
using SkiaSharp;

namespace PeftSharp.Data;

/// <summary>
/// Decodes image files (PNG, JPEG, BMP, GIF, WEBP) with SkiaSharp into 8-bit RGB. Like PIL's <c>convert("RGB")</c>,
/// which the reference pipelines use: grayscale becomes three equal channels, alpha is dropped without compositing,
/// no colour-profile conversion and no EXIF rotation.
/// </summary>
public static class ImageDecoder
{
    /// <summary>File extensions the folder reader treats as images (lower case, with the dot).</summary>
    public static readonly IReadOnlyList<string> ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];

    public const string ExpectedFormats = "a PNG, JPEG, BMP, GIF or WEBP image";

    /// <summary>Decodes <paramref name="path"/>; a missing or undecodable file is a <see cref="PeftSharpException"/> naming it.</summary>
    public static RgbImage Decode(string path)
    {
        if (TryDecode(path, out var image, out string? error)) return image!;
        throw new PeftSharpException(DataErrors.Format(path, null, error!));
    }

    /// <summary>Decodes without throwing for bad input; <paramref name="error"/> then says what went wrong.</summary>
    public static bool TryDecode(string path, out RgbImage? image, out string? error)
    {
        image = null;
        if (!File.Exists(path))
        {
            error = "image file not found";
            return false;
        }
        try
        {
            using var stream = File.OpenRead(path);
            return TryDecode(stream, out image, out error);
        }
        catch (IOException e)
        {
            error = $"cannot read image file ({e.Message})";
            return false;
        }
        catch (UnauthorizedAccessException e)
        {
            error = $"cannot read image file ({e.Message})";
            return false;
        }
    }

    /// <summary>Decodes an encoded image held in a stream (read to its end).</summary>
    public static bool TryDecode(Stream stream, out RgbImage? image, out string? error)
    {
        image = null;
        using var codec = SKCodec.Create(stream, out SKCodecResult created);
        if (codec == null)
        {
            error = $"cannot decode image ({Describe(created)}); expected {ExpectedFormats}";
            return false;
        }
        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0)
        {
            error = $"image has no pixels ({width}×{height})";
            return false;
        }
        // Unpremultiplied RGBA keeps the stored colour of translucent pixels, as PIL's convert("RGB") does; a null
        // colour space asks Skia for no profile conversion.
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize];
        var handle = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        SKCodecResult decoded;
        try { decoded = codec.GetPixels(info, handle.AddrOfPinnedObject()); }
        finally { handle.Free(); }
        // IncompleteInput means a truncated file whose missing rows Skia fills in; treat it as broken, like PIL does.
        if (decoded != SKCodecResult.Success)
        {
            error = $"cannot decode image ({Describe(decoded)}); expected {ExpectedFormats}";
            return false;
        }
        image = new RgbImage(width, height, DropAlpha(rgba, width * height));
        error = null;
        return true;
    }

    /// <summary>RGBA bytes to RGB bytes (alpha dropped, as PIL's convert("RGB") does).</summary>
    internal static byte[] DropAlpha(ReadOnlySpan<byte> rgba, int pixels)
    {
        var rgb = new byte[pixels * 3];
        for (int p = 0; p < pixels; p++)
        {
            rgb[3 * p] = rgba[4 * p];
            rgb[3 * p + 1] = rgba[4 * p + 1];
            rgb[3 * p + 2] = rgba[4 * p + 2];
        }
        return rgb;
    }

    static string Describe(SKCodecResult result) => result switch
    {
        SKCodecResult.IncompleteInput => "the file is truncated",
        SKCodecResult.ErrorInInput => "the file is corrupt",
        SKCodecResult.Unimplemented => "unsupported format",
        SKCodecResult.InvalidInput => "not a recognised image format",
        _ => $"Skia reports {result}",
    };
}
