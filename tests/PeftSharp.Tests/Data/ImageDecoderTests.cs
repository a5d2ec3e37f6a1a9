using PeftSharp.Data;
using SkiaSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Data;

public class ImageDecoderTests
{
    [Fact]
    public void Solid_red_png_decodes_to_one_zero_zero_with_height_and_width_in_order()
    {
        using var dir = new TempFolder();
        string path = TestImages.WriteSolidPng(dir.File("red.png"), width: 5, height: 3, 255, 0, 0);

        using var image = ImageDecoder.Decode(path).ToFloatTensor();

        Assert.Equal(new long[] { 3, 3, 5 }, image.shape);
        Assert.Equal(ScalarType.Float32, image.dtype);
        Assert.Equal(15f, image[0].sum().item<float>());
        Assert.Equal(0f, image[1].sum().item<float>());
        Assert.Equal(0f, image[2].sum().item<float>());
    }

    [Fact]
    public void Pixel_layout_is_channel_row_column()
    {
        using var dir = new TempFolder();
        string path = TestImages.WritePng(dir.File("grad.png"), 4, 3, (x, y) => ((byte)(x * 60), (byte)(y * 100), 7));

        var image = ImageDecoder.Decode(path);
        using var t = image.ToByteTensor();

        Assert.Equal((4, 3), (image.Width, image.Height));
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 4; x++)
            {
                Assert.Equal(x * 60, t[0, y, x].item<byte>());
                Assert.Equal(y * 100, t[1, y, x].item<byte>());
                Assert.Equal(7, t[2, y, x].item<byte>());
            }
    }

    [Fact]
    public void Jpeg_decodes_close_to_its_colour()
    {
        using var dir = new TempFolder();
        string path = TestImages.WriteJpeg(dir.File("blue.jpg"), 16, 16, (_, _) => (0, 0, 255));

        using var image = ImageDecoder.Decode(path).ToFloatTensor();

        using var expected = tensor(new float[] { 0, 0, 1 }).reshape(3, 1, 1).expand(3, 16, 16);
        Assert.True(image.allclose(expected, rtol: 0, atol: 3 / 255.0), $"max error {(image - expected).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(SKEncodedImageFormat.Png, "gray.png")]
    [InlineData(SKEncodedImageFormat.Jpeg, "gray.jpg")]
    public void Grayscale_file_becomes_three_equal_channels(SKEncodedImageFormat format, string name)
    {
        using var dir = new TempFolder();
        string path = TestImages.WriteGray(dir.File(name), 8, 8, (x, y) => (byte)(x * 30 + y), format);
        if (format == SKEncodedImageFormat.Png) Assert.Equal(0, File.ReadAllBytes(path)[25]); // PNG colour type 0: gray

        using var image = ImageDecoder.Decode(path).ToFloatTensor();

        Assert.Equal(new long[] { 3, 8, 8 }, image.shape);
        Assert.True(image[0].allclose(image[1], 0, 0) && image[1].allclose(image[2], 0, 0));
        if (format == SKEncodedImageFormat.Png) Assert.Equal((5 * 30 + 2) / 255f, image[1, 2, 5].item<float>(), 6);
    }

    [Fact]
    public void Alpha_is_dropped_without_compositing()
    {
        using var dir = new TempFolder();
        string path = TestImages.WriteRgbaPng(dir.File("half.png"), 2, 2, 200, 100, 50, 128);

        var image = ImageDecoder.Decode(path);

        Assert.Equal(new byte[] { 200, 100, 50 }, image.Pixels[..3]);
    }

    [Fact]
    public void Undecodable_file_is_an_error_naming_it()
    {
        using var dir = new TempFolder();
        string path = dir.WriteText("notes.png", "this is not an image");

        var e = Assert.Throws<PeftSharpException>(() => ImageDecoder.Decode(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("cannot decode", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Truncated_png_is_an_error_not_a_partly_black_image()
    {
        using var dir = new TempFolder();
        string path = TestImages.WritePng(dir.File("cut.png"), 64, 64, (x, y) => ((byte)(x * 3), (byte)(y * 3), (byte)(x ^ y)));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<PeftSharpException>(() => ImageDecoder.Decode(path));

        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Missing_file_is_an_error_naming_it()
    {
        using var dir = new TempFolder();
        string path = Path.Combine(dir.Path, "absent.jpg");

        var e = Assert.Throws<PeftSharpException>(() => ImageDecoder.Decode(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("not found", e.Message);
    }
}
