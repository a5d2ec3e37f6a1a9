using SkiaSharp;

namespace PeftSharp.Data;

/// <summary>Managed pixel operations shared by the generators: noise, blur, resampling and colours.</summary>
internal static class PixelOps
{
    public static byte ClampByte(double value) => (byte)Math.Clamp((int)Math.Round(value), 0, 255);

    /// <summary>Adds independent Gaussian noise (standard deviation in 0–255 units) to every byte.</summary>
    public static void AddNoise(byte[] pixels, double sigma, SuiteRng rng)
    {
        if (sigma <= 0) return;
        for (int i = 0; i < pixels.Length; i++)
            pixels[i] = ClampByte(pixels[i] + sigma * rng.Gaussian());
    }

    /// <summary>Separable Gaussian blur of one float plane, edges clamped.</summary>
    public static float[] Blur(float[] plane, int width, int height, double sigma)
    {
        if (sigma <= 0) return (float[])plane.Clone();
        int radius = Math.Max(1, (int)Math.Ceiling(3 * sigma));
        var kernel = new float[2 * radius + 1];
        double sum = 0;
        for (int k = -radius; k <= radius; k++) sum += kernel[k + radius] = (float)Math.Exp(-k * k / (2 * sigma * sigma));
        for (int k = 0; k < kernel.Length; k++) kernel[k] /= (float)sum;

        var horizontal = new float[plane.Length];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                float acc = 0;
                for (int k = -radius; k <= radius; k++)
                    acc += kernel[k + radius] * plane[y * width + Math.Clamp(x + k, 0, width - 1)];
                horizontal[y * width + x] = acc;
            }
        var result = new float[plane.Length];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                float acc = 0;
                for (int k = -radius; k <= radius; k++)
                    acc += kernel[k + radius] * horizontal[Math.Clamp(y + k, 0, height - 1) * width + x];
                result[y * width + x] = acc;
            }
        return result;
    }

    /// <summary>Bilinear sample of channel <paramref name="c"/> at a continuous position (pixel centres at +0.5), edges clamped.</summary>
    public static double Sample(byte[] pixels, int width, int height, int channels, int c, double x, double y)
    {
        x -= 0.5;
        y -= 0.5;
        int x0 = (int)Math.Floor(x), y0 = (int)Math.Floor(y);
        double fx = x - x0, fy = y - y0;
        double At(int xi, int yi) =>
            pixels[(Math.Clamp(yi, 0, height - 1) * width + Math.Clamp(xi, 0, width - 1)) * channels + c];
        return (1 - fy) * ((1 - fx) * At(x0, y0) + fx * At(x0 + 1, y0)) + fy * ((1 - fx) * At(x0, y0 + 1) + fx * At(x0 + 1, y0 + 1));
    }

    /// <summary>
    /// Resamples the square region (x0, y0, side) of an image to outSize × outSize, averaging a grid of bilinear
    /// samples per output pixel so that downscaling does not alias; <paramref name="flip"/> mirrors horizontally.
    /// </summary>
    public static byte[] CropResize(byte[] pixels, int width, int height, int channels,
        double x0, double y0, double side, int outSize, bool flip = false)
    {
        double step = side / outSize;
        int taps = Math.Max(1, (int)Math.Ceiling(step));
        var result = new byte[outSize * outSize * channels];
        for (int v = 0; v < outSize; v++)
            for (int u = 0; u < outSize; u++)
            {
                int su = flip ? outSize - 1 - u : u;
                for (int c = 0; c < channels; c++)
                {
                    double acc = 0;
                    for (int ty = 0; ty < taps; ty++)
                        for (int tx = 0; tx < taps; tx++)
                            acc += Sample(pixels, width, height, channels, c,
                                x0 + (su + (tx + 0.5) / taps) * step, y0 + (v + (ty + 0.5) / taps) * step);
                    result[(v * outSize + u) * channels + c] = ClampByte(acc / (taps * taps));
                }
            }
        return result;
    }

    /// <summary>An opaque colour from hue (degrees), saturation and value in [0, 1].</summary>
    public static SKColor Hsv(double hue, double saturation, double value) =>
        SKColor.FromHsv((float)(((hue % 360) + 360) % 360), (float)(saturation * 100), (float)(value * 100));

    /// <summary>Perceived brightness in [0, 1].</summary>
    public static double Luma(SKColor c) => (0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue) / 255.0;

    public static SKColor Scale(SKColor c, double factor) =>
        new(ClampByte(c.Red * factor), ClampByte(c.Green * factor), ClampByte(c.Blue * factor), c.Alpha);

    public static SKColor Mix(SKColor a, SKColor b, double t) =>
        new(ClampByte(a.Red + (b.Red - a.Red) * t), ClampByte(a.Green + (b.Green - a.Green) * t),
            ClampByte(a.Blue + (b.Blue - a.Blue) * t), ClampByte(a.Alpha + (b.Alpha - a.Alpha) * t));

    /// <summary>A random colour whose brightness differs from <paramref name="background"/> by at least <paramref name="contrast"/>.</summary>
    public static SKColor Contrasting(SKColor background, double contrast, SuiteRng rng)
    {
        for (int attempt = 0; ; attempt++)
        {
            var colour = Hsv(rng.Range(0, 360), rng.Range(0.2, 1.0), rng.Range(0.1, 1.0));
            if (Math.Abs(Luma(colour) - Luma(background)) >= contrast || attempt > 50)
                return Math.Abs(Luma(colour) - Luma(background)) >= contrast ? colour
                    : Luma(background) > 0.5 ? SKColors.Black : SKColors.White;
        }
    }

    /// <summary>Fills the canvas with a two-colour linear gradient at a random angle.</summary>
    public static void GradientBackground(SKCanvas canvas, int size, SKColor a, SKColor b, SuiteRng rng)
    {
        double angle = rng.Range(0, 2 * Math.PI);
        float half = size / 2f, dx = (float)(Math.Cos(angle) * half), dy = (float)(Math.Sin(angle) * half);
        using var shader = SKShader.CreateLinearGradient(new SKPoint(half - dx, half - dy), new SKPoint(half + dx, half + dy),
            [a, b], SKShaderTileMode.Clamp);
        using var paint = new SKPaint { Shader = shader };
        canvas.DrawRect(0, 0, size, size, paint);
    }
}
