using System.Buffers.Binary;
using System.IO.Compression;
using PeftSharp.Data;

namespace PeftSharp.Tests.Data;

public class IdxDatasetTests
{
    static byte[] Idx(uint magic, int[] dims, byte[] data)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, magic);
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * d), dims[d]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        return bytes;
    }

    static byte[] Gzip(byte[] raw)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(raw);
        return output.ToArray();
    }

    /// <summary>3 images of 2×3 pixels: image n's pixel k is 10n + k; labels 7, 0, 2.</summary>
    static (string Images, string Labels) Write(TempFolder dir, bool gzip = false, byte[]? labels = null, int[]? imageDims = null,
        uint imagesMagic = IdxDataset.ImagesMagic, int dropBytes = 0)
    {
        var pixels = Enumerable.Range(0, 3).SelectMany(n => Enumerable.Range(0, 6).Select(k => (byte)(10 * n + k))).ToArray();
        var images = Idx(imagesMagic, imageDims ?? [3, 2, 3], pixels);
        images = images[..(images.Length - dropBytes)];
        var labelBytes = Idx(IdxDataset.LabelsMagic, [(labels ?? [7, 0, 2]).Length], labels ?? [7, 0, 2]);
        string suffix = gzip ? ".gz" : "";
        string imagesPath = dir.File("images-idx3-ubyte" + suffix), labelsPath = dir.File("labels-idx1-ubyte" + suffix);
        File.WriteAllBytes(imagesPath, gzip ? Gzip(images) : images);
        File.WriteAllBytes(labelsPath, gzip ? Gzip(labelBytes) : labelBytes);
        return (imagesPath, labelsPath);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Reads_images_as_three_equal_channels_and_labels(bool gzip)
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir, gzip);

        var data = IdxDataset.Open(images, labels);

        Assert.Equal((3, 2, 3), (data.Count, data.Height, data.Width));
        Assert.Equal(8, data.NumClasses);
        Assert.Equal([7, 0, 2], Enumerable.Range(0, 3).Select(data.Label));
        var (image, label) = data[1];
        using (image)
        {
            Assert.Equal(0, label);
            Assert.Equal(new long[] { 3, 2, 3 }, image.shape);
            for (int c = 0; c < 3; c++)
                Assert.Equal(15 / 255f, image[c, 1, 2].item<float>(), 6); // row 1, column 2 → k = 5
        }
    }

    [Fact]
    public void Bad_magic_names_the_file_and_the_expected_magic()
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir, imagesMagic: 0x00000801);

        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(images, labels));

        Assert.StartsWith($"{images}: bad magic 0x00000801 at byte 0; expected 0x00000803", e.Message);
    }

    [Fact]
    public void Swapped_files_are_caught_by_the_magic()
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir);
        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(labels, images));
        Assert.StartsWith(labels, e.Message);
    }

    [Fact]
    public void Truncated_data_names_the_file_and_the_sizes()
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir, gzip: true, dropBytes: 4);

        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(images, labels));

        Assert.StartsWith($"{images}: truncated: header declares 3×2×3 = 18 data bytes, file has 14", e.Message);
    }

    [Fact]
    public void Truncated_header_names_the_file()
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir);
        File.WriteAllBytes(images, File.ReadAllBytes(images)[..10]);

        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(images, labels));

        Assert.StartsWith($"{images}: truncated header", e.Message);
    }

    [Fact]
    public void Image_and_label_count_mismatch_names_both_files()
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir, labels: [1, 2]);

        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(images, labels));

        Assert.StartsWith($"{labels}: header declares 2 labels", e.Message);
        Assert.Contains($"{images} declares 3 images", e.Message);
    }

    [Fact]
    public void Label_beyond_declared_classes_names_file_and_offset_or_is_skipped()
    {
        using var dir = new TempFolder();
        var (images, labels) = Write(dir);

        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(images, labels, numClasses: 5));
        Assert.StartsWith($"{labels}: byte 8 (item 0): label 7 out of range", e.Message);

        var kept = IdxDataset.Open(images, labels, numClasses: 5, skipBad: true);
        Assert.Equal(2, kept.Count);
        Assert.Equal(20, kept.ReadImage(1).Pixels[0]); // item 2 is now index 1
        Assert.Contains("item 0", Assert.Single(kept.Skipped).Reason);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        using var dir = new TempFolder();
        var (images, _) = Write(dir);
        string missing = Path.Combine(dir.Path, "nope-idx1-ubyte");
        var e = Assert.Throws<PeftSharpException>(() => IdxDataset.Open(images, missing));
        Assert.StartsWith(missing, e.Message);
    }
}
