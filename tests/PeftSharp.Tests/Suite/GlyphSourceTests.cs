using System.Globalization;
using PeftSharp.Suite;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Suite;

/// <summary>One glyph source over the system fonts, opened once for all glyph tests.</summary>
public sealed class GlyphFixture
{
    public GlyphSource Source { get; } = GlyphSource.Open(imageSize: 32, seed: 5);
}

public class GlyphSourceTests(GlyphFixture fixture) : IClassFixture<GlyphFixture>
{
    GlyphSource Source => fixture.Source;

    [Fact]
    public void Classes_are_single_characters_and_never_digits_or_other_numerals()
    {
        Assert.True(Source.NumFaces >= 1);
        Assert.True(Source.NumClasses >= 100, $"only {Source.NumClasses} classes");
        Assert.Equal(Source.NumClasses, Source.Classes.Distinct().Count());
        Assert.All(Source.Classes, c => Assert.Equal(1, new StringInfo(c).LengthInTextElements));
        Assert.All("0123456789", d => Assert.DoesNotContain(d.ToString(), Source.Classes));
        Assert.All(Source.Classes, c => Assert.False(char.IsDigit(c, 0) || char.IsNumber(c, 0), $"numeral class {c}"));
        Assert.Contains("A", Source.Classes);
        Assert.Contains("z", Source.Classes);
    }

    [Fact]
    public void Batches_have_the_right_shape_labels_in_range_and_varied_pixels()
    {
        var (pixels, labels) = Source.NextBatch(48, new Random(1));

        Assert.Equal(48 * 32 * 32 * 3, pixels.Length);
        Assert.Equal(48, labels.Length);
        Assert.All(labels, l => Assert.InRange(l, 0, Source.NumClasses - 1));
        Assert.True(labels.Distinct().Count() > 10);
        for (int i = 0; i < 48; i++) // every image has ink: not a flat background
        {
            var image = pixels.AsSpan(i * 3072, 3072).ToArray();
            Assert.True(image.Max() - image.Min() > 60, $"image {i} is nearly flat");
        }

        using var batch = Source.ToTensor(pixels);
        Assert.Equal(new long[] { 48, 3, 32, 32 }, batch.shape);
        Assert.Equal(ScalarType.Byte, batch.dtype);
        Assert.Equal(pixels[3 * (5 * 32 + 7) + 1], batch[0, 1, 5, 7].item<byte>()); // channel-first view of HWC bytes
    }

    [Fact]
    public void The_same_generator_state_gives_the_same_batch_and_another_a_different_one()
    {
        var a = Source.NextBatch(32, new Random(11));
        var b = Source.NextBatch(32, new Random(11));
        var c = Source.NextBatch(32, new Random(12));

        Assert.Equal(a.Labels, b.Labels);
        Assert.Equal(a.Pixels, b.Pixels);
        Assert.NotEqual(a.Pixels, c.Pixels);
    }

    [Fact]
    public void Held_out_sets_are_fixed_by_their_seed()
    {
        var a = Source.HeldOut(40, 3);
        var b = Source.HeldOut(40, 3);
        var c = Source.HeldOut(40, 4);

        Assert.Equal(a.Pixels, b.Pixels);
        Assert.Equal(a.Labels, b.Labels);
        Assert.NotEqual(a.Pixels, c.Pixels);
        Assert.All(a.Labels, l => Assert.InRange(l, 0, Source.NumClasses - 1));
    }

    [Fact]
    public void The_curriculum_start_draws_plain_grey_glyphs_from_the_first_classes()
    {
        var (pixels, labels) = Source.NextBatch(64, new Random(2), difficulty: 0, activeClasses: 10);

        Assert.All(labels, l => Assert.InRange(l, 0, 9));
        Assert.True(labels.Distinct().Count() > 5);
        for (int p = 0; p < pixels.Length; p += 3) // no colour, no noise: every pixel is a grey
            Assert.True(pixels[p] == pixels[p + 1] && pixels[p + 1] == pixels[p + 2], $"pixel {p / 3} is coloured");
        var full = Source.NextBatch(64, new Random(2));
        Assert.Contains(Enumerable.Range(0, full.Pixels.Length / 3), p => full.Pixels[3 * p] != full.Pixels[3 * p + 1]);
    }

    [Theory]
    [InlineData(-0.1, null)]
    [InlineData(1.5, null)]
    [InlineData(double.NaN, null)]
    [InlineData(0.5, 0)]
    [InlineData(0.5, 100000)]
    public void Curriculum_arguments_out_of_range_are_rejected(double difficulty, int? activeClasses)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Source.NextBatch(4, new Random(0), difficulty, activeClasses));
    }

    [Fact]
    public void Other_image_sizes_render_at_that_size()
    {
        var small = GlyphSource.Open(imageSize: 16);
        var (pixels, labels) = small.NextBatch(4, new Random(0));
        Assert.Equal(4 * 16 * 16 * 3, pixels.Length);
        Assert.Equal(4, labels.Length);
    }

    [Fact]
    public void A_folder_without_fonts_is_a_clear_user_error()
    {
        string empty = TestFiles.TempDir("peftsharp-no-fonts");
        try
        {
            File.WriteAllText(Path.Combine(empty, "notes.txt"), "not a font");
            var error = Assert.Throws<PeftSharpException>(() => GlyphSource.Open(fontDir: empty));
            Assert.Contains(empty, error.Message);
            Assert.Contains("font", error.Message);

            var missing = Assert.Throws<PeftSharpException>(() => GlyphSource.Open(fontDir: Path.Combine(empty, "nope")));
            Assert.Contains("not found", missing.Message);
        }
        finally { Directory.Delete(empty, recursive: true); }
    }
}
