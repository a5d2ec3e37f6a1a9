using System.Text.RegularExpressions;
using PeftSharp.Data;
using SkiaSharp;

namespace PeftSharp.Suite;

/// <summary>
/// The colour-and-texture half of the default backbone's pretraining: photographs and artwork from Debian's desktop
/// wallpaper packages, one class per picture (instance discrimination, as in exemplar pretraining), each sample a
/// random square crop of 10–50 % of the picture's short side, resized to the input size and randomly flipped, its
/// colours left as they are. Glyphs alone are drawn in random colours, which teaches the model to discard colour and
/// texture statistics; this source makes it keep them. It shares no image with the mini-VTAB suite (whose photographs
/// are OpenCV's samples from opencv-doc).
/// </summary>
public sealed class PhotoSource
{
    /// <summary>Where <c>mate-backgrounds</c> and <c>plasma-workspace-wallpapers</c> install their pictures.</summary>
    public static readonly IReadOnlyList<string> DefaultDirs = ["/usr/share/backgrounds/mate", "/usr/share/wallpapers"];
    public const string InstallHint = "apt-get install mate-backgrounds plasma-workspace-wallpapers";
    /// <summary>Each picture is kept in memory downscaled to this short side: crops then span 25–128 pixels.</summary>
    public const int WorkingSide = 256;
    const double MinCrop = 0.1, MaxCrop = 0.5;
    static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];
    // "Elephants_3840x2160.jpg" is another resolution of "Elephants.jpg": one picture, one class.
    static readonly Regex ResolutionSuffix = new(@"_\d+x\d+$", RegexOptions.Compiled);

    readonly RgbImage[] _pictures;

    PhotoSource(int imageSize, RgbImage[] pictures, string[] names, string[] files)
    {
        ImageSize = imageSize;
        _pictures = pictures;
        Names = names;
        Files = files;
    }

    public int ImageSize { get; }
    /// <summary>One name per class: the wallpaper's folder (KDE layout) or file name without a resolution suffix.</summary>
    public IReadOnlyList<string> Names { get; }
    /// <summary>The file each class was decoded from.</summary>
    public IReadOnlyList<string> Files { get; }
    public int NumClasses => Names.Count;

    /// <summary>
    /// Finds every PNG/JPEG picture under <paramref name="dirs"/> and keeps one file per picture: KDE's
    /// <c>NAME/contents/images/WxH.ext</c> variants are one picture (dark variants and screenshots are skipped), as
    /// are files differing only by a <c>_WxH</c> suffix. Of the variants, the smallest with a short side of at least
    /// 512 pixels is decoded (else the largest), then downscaled with area averaging to <see cref="WorkingSide"/>.
    /// </summary>
    public static PhotoSource Open(int imageSize, IEnumerable<string> dirs)
    {
        var roots = dirs.ToList();
        var missing = roots.Where(d => !Directory.Exists(d)).ToList();
        if (missing.Count > 0)
            throw new PeftSharpException($"{string.Join(", ", missing)}: picture folder not found; the photo source needs the wallpaper packages ({InstallHint})");
        var groups = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (string root in roots)
            foreach (string file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
            {
                string? key = PictureKey(Path.GetRelativePath(root, file));
                if (key == null) continue;
                if (!groups.TryGetValue(key, out var files)) groups[key] = files = [];
                files.Add(file);
            }
        if (groups.Count < 2)
            throw new PeftSharpException($"{string.Join(", ", roots)}: found {groups.Count} PNG/JPEG pictures; the photo source needs at least two ({InstallHint})");

        var chosen = groups.Select(g => (Name: g.Key, File: Choose(g.Value))).ToArray();
        var pictures = new RgbImage[chosen.Length];
        Parallel.For(0, chosen.Length, i => pictures[i] = Downscale(ImageDecoder.Decode(chosen[i].File), WorkingSide));
        return new PhotoSource(imageSize, pictures, chosen.Select(c => c.Name).ToArray(), chosen.Select(c => c.File).ToArray());
    }

    /// <summary>The picture a file shows, or null when it is not one to use.</summary>
    static string? PictureKey(string relative)
    {
        if (!Extensions.Contains(Path.GetExtension(relative).ToLowerInvariant())) return null;
        var parts = relative.Split(Path.DirectorySeparatorChar);
        int contents = Array.IndexOf(parts, "contents");
        if (contents > 0) // KDE wallpaper package: NAME/contents/images/WxH.png
            return contents + 2 < parts.Length && parts[contents + 1] == "images" ? string.Join('/', parts[..contents]) : null;
        if (Path.GetFileNameWithoutExtension(relative).Equals("screenshot", StringComparison.OrdinalIgnoreCase)) return null;
        string name = ResolutionSuffix.Replace(Path.GetFileNameWithoutExtension(relative), "");
        return string.Join('/', parts[..^1].Append(name));
    }

    static string Choose(List<string> variants)
    {
        var sized = variants.Order(StringComparer.Ordinal).Select(f =>
        {
            using var codec = SKCodec.Create(f);
            return (File: f, Short: codec == null ? 0 : Math.Min(codec.Info.Width, codec.Info.Height));
        }).ToList();
        var large = sized.Where(s => s.Short >= 512).OrderBy(s => s.Short).ToList();
        return large.Count > 0 ? large[0].File : sized.MaxBy(s => s.Short).File;
    }

    /// <summary>Area-averaging downscale so that the short side is <paramref name="side"/> (never upscales).</summary>
    static RgbImage Downscale(RgbImage image, int side)
    {
        double factor = (double)Math.Min(image.Width, image.Height) / side;
        if (factor <= 1) return image;
        int width = Math.Max(1, (int)Math.Round(image.Width / factor)), height = Math.Max(1, (int)Math.Round(image.Height / factor));
        var sums = new double[width * height * 3];
        var counts = new int[width * height];
        var src = image.Pixels;
        for (int y = 0; y < image.Height; y++)
        {
            int ty = Math.Min(height - 1, (int)(y / factor));
            for (int x = 0; x < image.Width; x++)
            {
                int t = ty * width + Math.Min(width - 1, (int)(x / factor)), s = (y * image.Width + x) * 3;
                counts[t]++;
                sums[3 * t] += src[s];
                sums[3 * t + 1] += src[s + 1];
                sums[3 * t + 2] += src[s + 2];
            }
        }
        var pixels = new byte[sums.Length];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = PixelOps.ClampByte(sums[i] / Math.Max(1, counts[i / 3]));
        return new RgbImage(width, height, pixels);
    }

    /// <summary>
    /// One sample per seed: pixels are count × size × size × 3 bytes (HWC, RGB) and labels picture indices plus
    /// <paramref name="firstLabel"/> (where these classes start in a head shared with another source), each sample
    /// depending only on its seed (as <see cref="GlyphSource"/>'s do).
    /// </summary>
    public (byte[] Pixels, long[] Labels) Render(IReadOnlyList<ulong> seeds, int firstLabel = 0)
    {
        int perImage = ImageSize * ImageSize * 3;
        var pixels = new byte[seeds.Count * perImage];
        var labels = new long[seeds.Count];
        Parallel.For(0, seeds.Count, i =>
        {
            var rng = new SuiteRng(seeds[i]);
            int picture = rng.Next(NumClasses);
            labels[i] = firstLabel + picture;
            Crop(_pictures[picture], rng).CopyTo(pixels, i * perImage);
        });
        return (pixels, labels);
    }

    byte[] Crop(RgbImage picture, SuiteRng rng)
    {
        double side = rng.Range(MinCrop, MaxCrop) * Math.Min(picture.Width, picture.Height);
        double x0 = rng.Range(0, picture.Width - side), y0 = rng.Range(0, picture.Height - side);
        return PixelOps.CropResize(picture.Pixels, picture.Width, picture.Height, 3, x0, y0, side, ImageSize, flip: rng.Chance(0.5));
    }
}
