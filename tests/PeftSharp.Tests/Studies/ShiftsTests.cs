using PeftSharp.Data;
using PeftSharp.Suite;
using PeftSharp.Tests.Cli;
using PeftSharp.Tests.Training;

namespace PeftSharp.Tests.Studies;

public class ShiftsTests
{
    static RgbImage Gradient() => new(8, 4, Enumerable.Range(0, 8 * 4 * 3).Select(i => (byte)(i * 2)).ToArray());

    [Fact]
    public void Inversion_and_contrast_do_what_they_say_pixel_by_pixel()
    {
        var image = Gradient();
        var inverted = Shifts.Apply(Shifts.Get("invert"), image, 0);
        Assert.Equal(image.Pixels.Select(b => (byte)(255 - b)), inverted.Pixels);
        // contrast-1 keeps 75 % of each value's distance from the image mean.
        double mean = image.Pixels.Average(b => (double)b);
        var low = Shifts.Apply(Shifts.Get("contrast-1"), image, 0);
        for (int i = 0; i < image.Pixels.Length; i++) Assert.Equal(mean + 0.75 * (image.Pixels[i] - mean), low.Pixels[i], 0.5 + 1e-9);
    }

    [Fact]
    public void Noise_is_seeded_and_grows_with_severity_and_blur_keeps_a_flat_image_flat()
    {
        var image = new RgbImage(16, 16, Enumerable.Repeat((byte)128, 16 * 16 * 3).ToArray());
        var a = Shifts.Apply(Shifts.Get("gaussian-noise-1"), image, 7);
        Assert.Equal(a.Pixels, Shifts.Apply(Shifts.Get("gaussian-noise-1"), image, 7).Pixels);
        Assert.NotEqual(a.Pixels, Shifts.Apply(Shifts.Get("gaussian-noise-1"), image, 8).Pixels);
        double Spread(RgbImage x) => Math.Sqrt(x.Pixels.Average(b => (b - 128.0) * (b - 128.0)));
        Assert.InRange(Spread(a), 6, 10);                                                     // σ = 8
        Assert.InRange(Spread(Shifts.Apply(Shifts.Get("gaussian-noise-5"), image, 7)), 40, 56);  // σ = 48
        Assert.Equal(image.Pixels, Shifts.Apply(Shifts.Get("blur-5"), image, 0).Pixels);
    }

    [Fact]
    public void A_shifted_task_is_a_vtab_folder_with_the_same_lists_and_corrupted_images_and_is_reused()
    {
        string task = TinyVtab.Create(train: 8, val: 4, test: 8);
        string output = TestFiles.TempDir();
        var shifted = Shifts.Materialize(task, "invert", output);
        Assert.False(shifted.Reused);
        Assert.Equal(Path.Combine(output, "tiny@invert"), shifted.Directory);
        var source = VtabTask.Open(task);
        var copy = VtabTask.Open(shifted.Directory);
        foreach (var split in VtabTask.SplitNames)
            Assert.Equal(File.ReadAllText(Path.Combine(task, split + ".txt")), File.ReadAllText(Path.Combine(shifted.Directory, split + ".txt")));
        string first = File.ReadAllLines(Path.Combine(task, "test.txt"))[0].Split(' ')[0];
        var original = ImageDecoder.Decode(Path.Combine(task, first));
        Assert.Equal(original.Pixels.Select(b => (byte)(255 - b)), ImageDecoder.Decode(Path.Combine(shifted.Directory, first)).Pixels);
        Assert.Equal(source.NumClasses, copy.NumClasses);
        Assert.True(Shifts.Materialize(task, "invert", output).Reused);
    }

    [Fact]
    public void An_unknown_shift_is_one_line_naming_the_shifts()
    {
        Assert.Contains("unknown shift 'fog-9'; expected one of gaussian-noise-1", Assert.Throws<PeftSharpException>(() => Shifts.Get("fog-9")).Message);
        var r = CliRunner.Run("suite", "materialize", "--out", TestFiles.TempDir(), "--shifts", "fog-9");
        CliRunner.AssertOneLineError(r, "unknown shift 'fog-9'");
        Assert.Equal(2, r.ExitCode);
    }
}
