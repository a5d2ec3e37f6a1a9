using System.Text.Json.Nodes;
using PeftSharp.Dense;

namespace PeftSharp.Tests.Dense;

/// <summary>The dense data formats: the built-in tasks read back through the public loaders, RLE round trips, and one
/// line naming the file and the field for each kind of bad input.</summary>
public class DenseDataTests
{
    static readonly Lazy<string> Root = new(() =>
    {
        DenseTestData.Full(DenseSuite.Detection);
        return Path.GetDirectoryName(DenseTestData.Full(DenseSuite.Segmentation))!;
    });

    static string Copy(string task)
    {
        string to = TestFiles.TempDir("dense-copy");
        foreach (var f in Directory.EnumerateFiles(Path.Combine(Root.Value, task), "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(Path.Combine(Root.Value, task), f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(f, target);
        }
        return to;
    }

    [Fact]
    public void Built_in_tasks_load_through_the_public_formats_with_exact_boxes_and_masks()
    {
        var seg = DenseTask.Open(Path.Combine(Root.Value, DenseSuite.Segmentation));
        Assert.Equal(DenseKind.Segmentation, seg.Kind);
        var val = seg.Split("val", 64);
        Assert.Equal(DenseSuite.GarmentsSeg.Val, val.Count);
        Assert.Equal(11, val.ClassNames.Count);
        Assert.All(val.Labels!, l => Assert.All(l, v => Assert.True(v < 11)));
        Assert.Contains(val.Labels!, l => l.Any(v => v > 0));

        var det = CocoDataset.Open(Path.Combine(Root.Value, DenseSuite.Detection), "val", 64);
        Assert.Equal(10, det.NumClasses);
        foreach (var image in det.Images)
            foreach (var o in image.Objects)
            {
                // The box is the mask's extent and the area its pixel count.
                var mask = o.Segmentation!.Decode();
                var xs = Enumerable.Range(0, mask.Length).Where(p => mask[p] != 0).Select(p => p % 64).ToList();
                var ys = Enumerable.Range(0, mask.Length).Where(p => mask[p] != 0).Select(p => p / 64).ToList();
                Assert.Equal(xs.Min(), o.X);
                Assert.Equal(ys.Max() - ys.Min() + 1, o.H);
                Assert.Equal(xs.Count, o.Area);
            }
    }

    [Fact]
    public void Rle_round_trips_and_compressed_strings_decode_as_pycocotools()
    {
        var mask = new byte[] { 0, 1, 1, 0, 0, 1 };   // 2 rows × 3 columns, row-major
        var counts = CocoSegmentation.Encode(mask, 2, 3);
        Assert.Equal(new[] { 2, 1, 1, 2 }, counts);   // by columns: 0 0 | 1 0 | 1 1 → runs 2 zeros, 1 one, 1 zero, 2 ones
        Assert.Equal(mask, new CocoSegmentation(null, counts, 2, 3).Decode());
        // pycocotools' rleToString([3, 5, 2, 4, 1]) by hand: 3 → '3', 5 → '5', 2 → '2' (no difference before the
        // fourth count), then 4 − 5 = −1 and 1 − 2 = −1, each one 5-bit group 0x1f with the sign bit: 48 + 31 = 'O'.
        Assert.Equal(new[] { 3, 5, 2, 4, 1 }, CocoSegmentation.DecodeCompressed("352OO", "x"));
    }

    [Theory]
    [InlineData("bbox", "[-5, 0, 4, 4]", "annotations[0].bbox", "outside")]
    [InlineData("bbox", "[1, 1, -2, 4]", "annotations[0].bbox", "negative size")]
    [InlineData("category_id", "99", "annotations[0].category_id", "unknown category id 99")]
    [InlineData("image_id", "4242", "annotations[0].image_id", "no image with id 4242")]
    public void Bad_coco_annotations_name_the_file_and_field(string field, string value, string where, string what)
    {
        string dir = Copy(DenseSuite.Detection);
        string json = CocoDataset.AnnotationFile(dir, "val");
        var coco = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
        coco["annotations"]![0]![field] = JsonNode.Parse(value);
        File.WriteAllText(json, coco.ToJsonString());
        var e = Assert.Throws<PeftSharpException>(() => CocoDataset.Open(dir, "val", 64));
        Assert.Contains(json, e.Message);
        Assert.Contains(where, e.Message);
        Assert.Contains(what, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_listed_image_that_is_missing_is_named()
    {
        string dir = Copy(DenseSuite.Detection);
        File.Delete(Path.Combine(dir, "val", "00003.png"));
        var e = Assert.Throws<PeftSharpException>(() => CocoDataset.Open(dir, "val", 64));
        Assert.Contains("images[3].file_name", e.Message);
        Assert.Contains("00003.png", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void A_mask_of_the_wrong_size_or_with_an_unknown_class_is_named()
    {
        string dir = Copy(DenseSuite.Segmentation);
        string label = Path.Combine(dir, "annotations", "val", "00002.png");
        File.WriteAllBytes(label, GrayPng(32, new byte[32 * 32]));
        var e = Assert.Throws<PeftSharpException>(() => SegmentationFolder.Open(dir, "val", 64));
        Assert.Contains(label, e.Message);
        Assert.Contains("label is 32x32 but its image 00002.png is 64x64", e.Message);

        var bad = new byte[64 * 64];
        bad[64 * 3 + 5] = 40;
        File.WriteAllBytes(label, GrayPng(64, bad));
        e = Assert.Throws<PeftSharpException>(() => SegmentationFolder.Open(dir, "val", 64));
        Assert.Contains("class index 40 at pixel (5, 3) is beyond the 11 classes", e.Message);
    }

    static byte[] GrayPng(int size, byte[] pixels)
    {
        using var bitmap = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(size, size, SkiaSharp.SKColorType.Gray8, SkiaSharp.SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    [Fact]
    public void Palette_label_pngs_are_read_as_indices()
    {
        // A 2×1 palette PNG (colour type 3) whose indices are 1 and 255 (a Sub-filtered row), palette black, red, white:
        // the indices come back, not the colours.
        byte[] png = Convert.FromBase64String("iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAMAAADD/I+4AAAACVBMVEUAAAD/AAD///9nGWQeAAAAC0lEQVR4nGNk/AcAAQYBAa7mjKYAAAAASUVORK5CYII=");   // made with zlib: Sub-filtered row [1, 1 + 254]
        var (w, h, indices) = IndexPng.Read(png, "test.png");
        Assert.Equal((2, 1), (w, h));
        Assert.Equal(new byte[] { 1, 255 }, indices);
    }
}
