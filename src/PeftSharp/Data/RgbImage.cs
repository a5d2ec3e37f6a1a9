using PeftSharp.Interop;
using static TorchSharp.torch;

namespace PeftSharp.Data;

/// <summary>
/// A decoded 8-bit RGB image, pixels interleaved row by row (H, W, 3). Kept as bytes rather than a tensor so that
/// readers stay independent of TorchSharp's dispose scopes and parallel decoding creates no native objects.
/// </summary>
public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>Height × Width × 3 bytes, R G B per pixel.</summary>
    public byte[] Pixels { get; }

    public RgbImage(int width, int height, byte[] pixels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), "image sides must be positive");
        if (pixels.Length != (long)width * height * 3)
            throw new ArgumentException($"expected {width}×{height}×3 = {(long)width * height * 3} bytes, got {pixels.Length}", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>A grayscale image (H × W bytes) with its value copied into all three channels.</summary>
    public static RgbImage FromGray(int width, int height, ReadOnlySpan<byte> gray)
    {
        var rgb = new byte[gray.Length * 3];
        for (int i = 0; i < gray.Length; i++)
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = gray[i];
        return new RgbImage(width, height, rgb);
    }

    /// <summary>uint8 tensor [3,H,W] (channels first, as the models take them). The caller owns it.</summary>
    public Tensor ToByteTensor()
    {
        using var hwc = tensor(Pixels, new long[] { Height, Width, 3 });
        return hwc.permute(2, 0, 1).contiguous();
    }

    /// <summary>float32 tensor [3,H,W] with values in [0,1]. The caller owns it.</summary>
    public Tensor ToFloatTensor()
    {
        using var bytes = ToByteTensor();
        using var asFloat = bytes.to_type(ScalarType.Float32);
        return KeptScalar.Div(asFloat, 255f);   // runs on pool threads (a loader's cache)
    }
}
