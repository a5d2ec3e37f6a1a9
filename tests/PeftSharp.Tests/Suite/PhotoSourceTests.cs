using PeftSharp.Suite;
using PeftSharp.Tests.Data;

namespace PeftSharp.Tests.Suite;

public class PhotoSourceTests
{
    /// <summary>A folder laid out like the wallpaper packages: KDE's NAME/contents/images/WxH and MATE's flat files.</summary>
    static TempFolder Wallpapers()
    {
        var folder = new TempFolder();
        // KDE: one picture in two resolutions, a dark variant and a screenshot (the last two are not classes).
        TestImages.WriteSolidPng(folder.File("kde/Red/contents/images/640x400.png"), 640, 400, 220, 20, 20);
        TestImages.WriteSolidPng(folder.File("kde/Red/contents/images/1280x800.png"), 1280, 800, 220, 20, 20);
        TestImages.WriteSolidPng(folder.File("kde/Red/contents/images_dark/640x400.png"), 640, 400, 10, 10, 10);
        TestImages.WriteSolidPng(folder.File("kde/Red/contents/screenshot.png"), 64, 40, 10, 10, 10);
        // MATE: the same picture at two sizes differing by a _WxH suffix, plus a striped one.
        TestImages.WriteJpeg(folder.File("mate/nature/Green.jpg"), 300, 200, (_, _) => (20, 200, 20));
        TestImages.WriteJpeg(folder.File("mate/nature/Green_3840x2160.jpg"), 384, 216, (_, _) => (20, 200, 20));
        TestImages.WritePng(folder.File("mate/abstract/Stripes.png"), 400, 300, (x, _) => x / 10 % 2 == 0 ? ((byte)0, (byte)0, (byte)230) : ((byte)240, (byte)240, (byte)240));
        folder.WriteText("mate/README.txt", "not a picture");
        return folder;
    }

    [Fact]
    public void One_class_per_picture_whatever_its_variants()
    {
        using var folder = Wallpapers();
        var source = PhotoSource.Open(32, [Path.Combine(folder.Path, "kde"), Path.Combine(folder.Path, "mate")]);

        Assert.Equal(["Red", "abstract/Stripes", "nature/Green"], source.Names);
        // Of a picture's variants, the smallest with a short side of at least 512 (else the largest) is decoded.
        Assert.EndsWith("1280x800.png", source.Files[0]);
        Assert.EndsWith("Green_3840x2160.jpg", source.Files[2]);
    }

    [Fact]
    public void Crops_keep_their_picture_colours_and_depend_only_on_their_seeds()
    {
        using var folder = Wallpapers();
        var source = PhotoSource.Open(16, [Path.Combine(folder.Path, "kde"), Path.Combine(folder.Path, "mate")]);
        ulong[] seeds = Enumerable.Range(0, 60).Select(i => (ulong)(i * 7919 + 1)).ToArray();

        var (pixels, labels) = source.Render(seeds);
        Assert.Equal(60 * 16 * 16 * 3, pixels.Length);
        Assert.All(labels, l => Assert.InRange(l, 0, 2));
        Assert.Equal(3, labels.Distinct().Count());
        for (int i = 0; i < labels.Length; i++)
        {
            var (r, g, b) = (Mean(pixels, i, 0), Mean(pixels, i, 1), Mean(pixels, i, 2));
            switch (labels[i])
            {
                case 0: Assert.True(r > 200 && g < 40 && b < 40, $"red crop {i}: {r:F0}/{g:F0}/{b:F0}"); break;
                case 2: Assert.True(g > 180 && r < 50 && b < 50, $"green crop {i}: {r:F0}/{g:F0}/{b:F0}"); break;
                default: Assert.True(b > r + 20, $"stripes crop {i}: {r:F0}/{g:F0}/{b:F0}"); break;
            }
        }
        // The same seeds give the same crops (parallel rendering does not change them); others give others.
        Assert.Equal(pixels, source.Render(seeds).Pixels);
        // Placed after another source's classes, the same crops carry shifted labels.
        var shifted = source.Render(seeds, firstLabel: 10);
        Assert.Equal(pixels, shifted.Pixels);
        Assert.Equal(labels.Select(l => l + 10), shifted.Labels);
        var striped = Enumerable.Range(0, labels.Length).Where(i => labels[i] == 1).Take(2).ToArray();
        Assert.NotEqual(pixels.AsSpan(striped[0] * 768, 768).ToArray(), pixels.AsSpan(striped[1] * 768, 768).ToArray());
    }

    /// <summary>Mean of channel <paramref name="c"/> over the 16×16 crop <paramref name="index"/>.</summary>
    static double Mean(byte[] pixels, int index, int c)
    {
        double sum = 0;
        for (int p = index * 768 + c; p < (index + 1) * 768; p += 3) sum += pixels[p];
        return sum / 256;
    }

    [Fact]
    public void Missing_folders_and_too_few_pictures_are_clear_errors()
    {
        using var folder = new TempFolder();
        string missing = Path.Combine(folder.Path, "nowhere");
        var e = Assert.Throws<PeftSharpException>(() => PhotoSource.Open(32, [missing]));
        Assert.Contains(missing, e.Message);
        Assert.Contains("apt-get install mate-backgrounds", e.Message);

        TestImages.WriteSolidPng(folder.File("one/only.png"), 64, 64, 1, 2, 3);
        e = Assert.Throws<PeftSharpException>(() => PhotoSource.Open(32, [Path.Combine(folder.Path, "one")]));
        Assert.Contains("found 1 PNG/JPEG pictures", e.Message);
    }
}
