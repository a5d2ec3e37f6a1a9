using PeftSharp.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Data;

public class TransformsTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Resize_gives_the_target_shape_for_images_and_batches(bool antialias)
    {
        using var image = rand(3, 17, 40);
        using var batch = rand(2, 3, 300, 5);

        using var a = Transforms.Resize(image, 24, antialias);
        using var b = Transforms.Resize(batch, 24, antialias);

        Assert.Equal(new long[] { 3, 24, 24 }, a.shape);
        Assert.Equal(new long[] { 2, 3, 24, 24 }, b.shape);
    }

    [Theory]
    [InlineData(7, true)]
    [InlineData(7, false)]
    [InlineData(100, true)]
    [InlineData(100, false)]
    public void Resize_of_a_constant_image_stays_constant(int side, bool antialias)
    {
        using var image = full(new long[] { 3, side, side + 3 }, 0.3f);

        using var resized = Transforms.Resize(image, 32, antialias);

        Assert.True(resized.allclose(full(new long[] { 3, 32, 32 }, 0.3f), rtol: 0, atol: 1e-6));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Resize_clamps_the_bicubic_overshoot_to_the_unit_range(bool antialias)
    {
        // A hard 0/1 edge rings under bicubic upsampling; without the clamp values leave [0,1].
        using var edge = cat([zeros(3, 8, 4), ones(3, 8, 4)], 2);
        using var raw = nn.functional.interpolate(edge.unsqueeze(0), [32, 32], mode: InterpolationMode.Bicubic,
            align_corners: false, antialias: antialias);
        Assert.True(raw.max().item<float>() > 1f && raw.min().item<float>() < 0f);

        using var resized = Transforms.Resize(edge, 32, antialias);

        Assert.Equal(1f, resized.max().item<float>());
        Assert.Equal(0f, resized.min().item<float>());
        using var unclamped = raw.squeeze(0).clamp(0f, 1f);
        Assert.True(resized.allclose(unclamped));
    }

    [Fact]
    public void Resize_to_the_same_size_returns_the_image_unchanged()
    {
        using var image = rand(3, 9, 9);
        using var resized = Transforms.Resize(image, 9);
        Assert.True(resized.allclose(image, rtol: 0, atol: 0));
    }

    [Fact]
    public void Normalisation_presets_have_the_published_values()
    {
        using var half = full(new long[] { 1, 3, 2, 2 }, 0.5f);

        using var imagenet = Transforms.Normalize(half, Normalization.FromName("imagenet"));
        using var clip = Transforms.Normalize(half, Normalization.FromName("CLIP"));
        using var none = Transforms.Normalize(half, Normalization.FromName("none"));
        using var inception = Transforms.Normalize(full(new long[] { 3, 1, 1 }, 1f), Normalization.Inception);

        Assert.Equal((0.5f - 0.456f) / 0.224f, imagenet[0, 1, 1, 1].item<float>(), 5);
        Assert.Equal((0.5f - 0.485f) / 0.229f, imagenet[0, 0, 0, 0].item<float>(), 5);
        Assert.Equal((0.5f - 0.40821073f) / 0.27577711f, clip[0, 2, 0, 1].item<float>(), 5);
        Assert.True(none.allclose(half, 0, 0));
        Assert.Equal(1f, inception[1, 0, 0].item<float>(), 6);
        Assert.Equal(0.5f, half[0, 0, 0, 0].item<float>()); // the input is left alone
    }

    [Fact]
    public void Unknown_normalisation_names_the_choices()
    {
        var e = Assert.Throws<PeftSharpException>(() => Normalization.FromName("imagenet21k"));
        Assert.Contains("'imagenet21k'", e.Message);
        Assert.Contains("none, imagenet, inception, clip", e.Message);
    }

    [Fact]
    public void Random_resized_crop_samples_are_seeded_and_within_the_protocol_ranges()
    {
        var rng1 = new Random(5);
        var rng2 = new Random(5);
        var boxes = Enumerable.Range(0, 200).Select(_ => Transforms.SampleResizedCrop(224, 224, rng1)).ToList();

        Assert.Equal(boxes, Enumerable.Range(0, 200).Select(_ => Transforms.SampleResizedCrop(224, 224, rng2)));
        Assert.True(boxes.Distinct().Count() > 150);
        foreach (var box in boxes)
        {
            Assert.InRange(box.Top, 0, 224 - box.Height);
            Assert.InRange(box.Left, 0, 224 - box.Width);
            double area = (double)box.Height * box.Width / (224 * 224), ratio = (double)box.Width / box.Height;
            Assert.InRange(area, 0.075, 1.0);
            Assert.InRange(ratio, 0.70, 1.40); // 3/4–4/3 up to rounding of small sides
        }
    }

    [Fact]
    public void Random_resized_crop_falls_back_to_a_centred_crop_within_the_ratio()
    {
        // An area fraction above 1 can never fit, so every try fails: torchvision then crops the centre at ratio 4/3.
        var box = Transforms.SampleResizedCrop(10, 40, new Random(1), minScale: 2, maxScale: 3);
        Assert.Equal(new CropBox(0, 13, 10, 13), box);
    }

    [Fact]
    public void Resized_crop_and_flip_move_pixels_where_expected()
    {
        using var image = arange(16f).reshape(1, 4, 4).expand(3, 4, 4).contiguous();

        using var crop = Transforms.ResizedCrop(image, new CropBox(1, 2, 2, 2), 2, 2);
        using var flipped = Transforms.HorizontalFlip(image);

        Assert.Equal(new float[] { 6, 7, 10, 11 }, crop[0].flatten().data<float>().ToArray());
        Assert.Equal(new float[] { 3, 2, 1, 0 }, flipped[1, 0].data<float>().ToArray());
    }

    [Fact]
    public void Augmentation_is_deterministic_for_a_seed_and_differs_across_seeds()
    {
        using var batch = rand(4, 3, 16, 16, generator: new Generator(3));

        using var a = Augmentation.ManyShot.Apply(batch, new Random(11));
        using var b = Augmentation.ManyShot.Apply(batch, new Random(11));
        using var c = Augmentation.ManyShot.Apply(batch, new Random(12));

        Assert.Equal(batch.shape, a.shape);
        Assert.True(a.allclose(b, 0, 0));
        Assert.False(a.allclose(c));
    }

    [Fact]
    public void Flip_only_augmentation_flips_about_half_the_images()
    {
        using var batch = rand(200, 3, 2, 2);
        var flipOnly = new Augmentation { RandomResizedCrop = false };

        using var output = flipOnly.Apply(batch, new Random(0));

        int same = 0, flipped = 0;
        for (int i = 0; i < 200; i++)
        {
            if (output[i].allclose(batch[i], 0, 0)) same++;
            else if (output[i].allclose(batch[i].flip(-1), 0, 0)) flipped++;
        }
        Assert.Equal(200, same + flipped);
        Assert.InRange(flipped, 70, 130);
    }
}
