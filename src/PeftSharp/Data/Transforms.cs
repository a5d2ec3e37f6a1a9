using PeftSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Data;

/// <summary>
/// Per-channel mean/std normalisation presets. "none" is the study's VTAB setting (pixels stay in [0,1]).
/// </summary>
public sealed class Normalization
{
    public static readonly Normalization None = new("none", [0f, 0f, 0f], [1f, 1f, 1f]);
    public static readonly Normalization ImageNet = new("imagenet", [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);
    /// <summary>Inception-style (mean 0.5, std 0.5): maps [0,1] to [-1,1]; the many-shot protocol's setting.</summary>
    public static readonly Normalization Inception = new("inception", [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);
    public static readonly Normalization Clip = new("clip",
        [0.48145466f, 0.4578275f, 0.40821073f], [0.26862954f, 0.26130258f, 0.27577711f]);

    public static readonly IReadOnlyList<Normalization> Presets = [None, ImageNet, Inception, Clip];

    public Normalization(string name, float[] mean, float[] std)
    {
        if (mean.Length != 3 || std.Length != 3) throw new ArgumentException("normalisation needs 3 means and 3 stds");
        if (std.Any(s => !(s > 0))) throw new ArgumentException("normalisation stds must be positive", nameof(std));
        Name = name;
        Mean = mean;
        Std = std;
    }

    public string Name { get; }
    public IReadOnlyList<float> Mean { get; }
    public IReadOnlyList<float> Std { get; }
    public bool IsIdentity => Mean.All(m => m == 0f) && Std.All(s => s == 1f);

    /// <summary>The preset named <paramref name="name"/> (case-insensitive); an unknown name names the choices.</summary>
    public static Normalization FromName(string name) =>
        Presets.FirstOrDefault(p => string.Equals(p.Name, name?.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new PeftSharpException(
            $"normalisation '{name}' unknown; expected one of {string.Join(", ", Presets.Select(p => p.Name))}");

    public override string ToString() => Name;
}

/// <summary>A crop rectangle in pixels: rows Top..Top+Height, columns Left..Left+Width.</summary>
public readonly record struct CropBox(int Top, int Left, int Height, int Width);

/// <summary>
/// Many-shot training augmentation, as torchvision's RandomResizedCrop(size) followed by RandomHorizontalFlip().
/// Randomness comes from the caller's seeded <see cref="Random"/>, drawn per image in batch order, so a run is
/// reproducible.
/// </summary>
public sealed record Augmentation
{
    public bool RandomResizedCrop { get; init; } = true;
    public double MinScale { get; init; } = 0.08;
    public double MaxScale { get; init; } = 1.0;
    public double MinRatio { get; init; } = 3.0 / 4.0;
    public double MaxRatio { get; init; } = 4.0 / 3.0;
    public bool HorizontalFlip { get; init; } = true;

    /// <summary>The many-shot protocol's setting: RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) and flips.</summary>
    public static Augmentation ManyShot { get; } = new();

    /// <summary>Augments a float batch [B,3,H,W] into a new batch of the same shape, which the caller owns.</summary>
    public Tensor Apply(Tensor batch, Random rng)
    {
        Transforms.CheckBatch(batch, nameof(batch));
        int height = (int)batch.shape[2], width = (int)batch.shape[3];
        using var scope = NewDisposeScope();
        var outputs = new Tensor[batch.shape[0]];
        for (int i = 0; i < outputs.Length; i++)
        {
            Tensor image = batch[i];
            if (RandomResizedCrop)
            {
                var box = Transforms.SampleResizedCrop(height, width, rng, MinScale, MaxScale, MinRatio, MaxRatio);
                image = Transforms.ResizedCrop(image, box, height, width);
            }
            if (HorizontalFlip && rng.NextDouble() < 0.5) image = Transforms.HorizontalFlip(image);
            outputs[i] = image;
        }
        return stack(outputs).MoveToOuterDisposeScope();
    }
}

/// <summary>Resizing, cropping, flipping and normalising float images [3,H,W] or batches [B,3,H,W] in [0,1].</summary>
public static class Transforms
{
    /// <summary>
    /// Bicubic resize to <paramref name="size"/>×<paramref name="size"/> (interpolate, align_corners false), clamped
    /// to [0,1] because bicubic overshoots. With <paramref name="antialias"/> (the default) torch uses its
    /// antialiased bicubic filter (a = −0.5), which is what PIL's bicubic resize computes — the reference VTAB
    /// pipelines resize PIL images — and which avoids aliasing when shrinking large images. Returns a new tensor.
    /// </summary>
    public static Tensor Resize(Tensor images, int size, bool antialias = true) => Resize(images, size, size, antialias);

    public static Tensor Resize(Tensor images, int height, int width, bool antialias = true)
    {
        if (height <= 0 || width <= 0)
            throw new PeftSharpException($"resize target {height}×{width}: expected positive sides");
        bool single = images.dim() == 3;
        if (!single) CheckBatch(images, nameof(images));
        else CheckImage(images, nameof(images));
        using var scope = NewDisposeScope();
        var batch = single ? images.unsqueeze(0) : images;
        // Same size: bicubic would reproduce the input exactly, so skip the work.
        var resized = batch.shape[2] == height && batch.shape[3] == width
            ? batch.clone()
            : nn.functional.interpolate(batch, [height, width], mode: InterpolationMode.Bicubic,
                align_corners: false, antialias: antialias);
        resized = KeptScalar.Clamp_(resized, 0, 1);   // runs on pool threads (a loader's cache)
        return (single ? resized.squeeze(0) : resized).MoveToOuterDisposeScope();
    }

    /// <summary>(x − mean) / std per channel; works on [3,H,W] and [B,3,H,W]. Returns a new tensor.</summary>
    public static Tensor Normalize(Tensor images, Normalization normalization)
    {
        var result = images.to_type(ScalarType.Float32, copy: true);
        return NormalizeInPlace(result, normalization);
    }

    /// <summary>Normalises <paramref name="images"/> in place and returns it.</summary>
    public static Tensor NormalizeInPlace(Tensor images, Normalization normalization)
    {
        if (images.dim() < 3 || images.shape[^3] != 3)
            throw new ArgumentException($"expected [3,H,W] or [B,3,H,W], got [{string.Join(",", images.shape)}]", nameof(images));
        if (normalization.IsIdentity) return images;
        using var mean = tensor(normalization.Mean.ToArray(), new long[] { 3, 1, 1 }, images.dtype, images.device);
        using var std = tensor(normalization.Std.ToArray(), new long[] { 3, 1, 1 }, images.dtype, images.device);
        return images.sub_(mean).div_(std);
    }

    /// <summary>
    /// Samples a crop like torchvision's RandomResizedCrop.get_params: up to 10 tries at an area fraction in
    /// [minScale, maxScale] and a log-uniform aspect ratio in [minRatio, maxRatio]; then a centred crop clamped to
    /// the ratio range.
    /// </summary>
    public static CropBox SampleResizedCrop(int height, int width, Random rng, double minScale = 0.08, double maxScale = 1.0,
        double minRatio = 3.0 / 4.0, double maxRatio = 4.0 / 3.0)
    {
        if (height <= 0 || width <= 0) throw new ArgumentOutOfRangeException(nameof(height), "image sides must be positive");
        if (!(0 < minScale && minScale <= maxScale) || !(0 < minRatio && minRatio <= maxRatio))
            throw new PeftSharpException($"RandomResizedCrop scale ({minScale}, {maxScale}) / ratio ({minRatio}, {maxRatio}): expected 0 < min ≤ max");
        double area = (double)height * width, logMin = Math.Log(minRatio), logMax = Math.Log(maxRatio);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double targetArea = area * Uniform(rng, minScale, maxScale);
            double aspect = Math.Exp(Uniform(rng, logMin, logMax));
            // Math.Round rounds half to even, like Python's round().
            int w = (int)Math.Round(Math.Sqrt(targetArea * aspect));
            int h = (int)Math.Round(Math.Sqrt(targetArea / aspect));
            if (0 < w && w <= width && 0 < h && h <= height)
                return new CropBox(rng.Next(height - h + 1), rng.Next(width - w + 1), h, w);
        }
        return CentreCrop(height, width, minRatio, maxRatio);
    }

    static CropBox CentreCrop(int height, int width, double minRatio, double maxRatio)
    {
        double inRatio = (double)width / height;
        int w = width, h = height;
        if (inRatio < minRatio) h = (int)Math.Round(w / minRatio);
        else if (inRatio > maxRatio) w = (int)Math.Round(h * maxRatio);
        return new CropBox((height - h) / 2, (width - w) / 2, h, w);
    }

    static double Uniform(Random rng, double low, double high) => low + (high - low) * rng.NextDouble();

    /// <summary>
    /// Crops <paramref name="image"/> [3,H,W] to <paramref name="box"/> and resizes it to height×width bilinearly
    /// (torchvision's RandomResizedCrop default, antialiased). Returns a new tensor.
    /// </summary>
    public static Tensor ResizedCrop(Tensor image, CropBox box, int height, int width)
    {
        CheckImage(image, nameof(image));
        if (box.Top < 0 || box.Left < 0 || box.Height <= 0 || box.Width <= 0
            || box.Top + box.Height > image.shape[1] || box.Left + box.Width > image.shape[2])
            throw new ArgumentOutOfRangeException(nameof(box), $"{box} outside a {image.shape[1]}×{image.shape[2]} image");
        using var scope = NewDisposeScope();
        var crop = image.narrow(1, box.Top, box.Height).narrow(2, box.Left, box.Width).unsqueeze(0);
        var resized = nn.functional.interpolate(crop, [height, width], mode: InterpolationMode.Bilinear,
            align_corners: false, antialias: true);
        return resized.squeeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>Mirrors left–right (the last dimension). Returns a new tensor.</summary>
    public static Tensor HorizontalFlip(Tensor images) => images.flip(-1);

    internal static void CheckImage(Tensor image, string name)
    {
        if (image.dim() != 3 || image.shape[0] != 3 || !is_floating_point(image))
            throw new ArgumentException($"expected a float image [3,H,W], got {image.dtype} [{string.Join(",", image.shape)}]", name);
    }

    internal static void CheckBatch(Tensor batch, string name)
    {
        if (batch.dim() != 4 || batch.shape[1] != 3 || !is_floating_point(batch))
            throw new ArgumentException($"expected a float batch [B,3,H,W], got {batch.dtype} [{string.Join(",", batch.shape)}]", name);
    }
}
