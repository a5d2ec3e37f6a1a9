using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tests.Cli;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using PeftSharp.Video;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Video;

/// <summary>Clip lists, VideoMAE's frame sampling, bad clips, and the two temporal methods.</summary>
public class ClipDataTests
{
    [Fact]
    public void Segment_sampling_takes_segment_middles_at_test_time()
    {
        // 16 frames in 4 segments [0,4) [4,8) [8,12) [12,16): middles 2, 6, 10, 14; 10 frames: [0,2) [2,5) [5,7) [7,10) → 1, 3, 6, 8.
        var s = new ClipSampler(SamplingMode.Segment, 4);
        Assert.Equal(new[] { 2, 6, 10, 14 }, s.Test(16));
        Assert.Equal(new[] { 1, 3, 6, 8 }, s.Test(10));
        var train = s.Train(16, new Random(1));
        for (int i = 0; i < 4; i++) Assert.InRange(train[i], 4 * i, 4 * i + 3);
    }

    [Fact]
    public void Dense_sampling_spaces_views_evenly()
    {
        // 4 frames every 3 need 10 frames; in 22 there is room 12: views at starts 0, 6, 12.
        var s = new ClipSampler(SamplingMode.Dense, 4, 3);
        Assert.Equal(10, s.FramesNeeded);
        Assert.Equal(new[] { 0, 3, 6, 9 }, s.Test(22, 0, 3));
        Assert.Equal(new[] { 6, 9, 12, 15 }, s.Test(22, 1, 3));
        Assert.Equal(new[] { 12, 15, 18, 21 }, s.Test(22, 2, 3));
    }

    static string Folder(string root, string name, int frames)
    {
        string dir = Path.Combine(root, name);
        Directory.CreateDirectory(dir);
        for (int f = 0; f < frames; f++)
        {
            var pixels = Enumerable.Repeat((byte)(f * 30), 8 * 8 * 3).ToArray();
            File.WriteAllBytes(Path.Combine(dir, $"img_{f + 1:D5}.png"), PngOf(pixels));
        }
        return dir;
    }

    static byte[] PngOf(byte[] rgb)
    {
        using var bitmap = new SkiaSharp.SKBitmap(8, 8);
        for (int i = 0; i < 64; i++) bitmap.SetPixel(i % 8, i / 8, new SkiaSharp.SKColor(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]));
        using var image = SkiaSharp.SKImage.FromBitmap(bitmap);
        return image.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100).ToArray();
    }

    [Fact]
    public void Rawframe_clips_read_as_sampled_normalised_frames()
    {
        string root = TestFiles.TempDir();
        Folder(root, "a", 8);
        File.WriteAllText(Path.Combine(root, "list.txt"), "a 8 1\n");
        var data = ClipDataset.FromList(Path.Combine(root, "list.txt"), root, 2, new ClipSampler(SamplingMode.Segment, 4),
                                        new ClipTransform { Size = 8, Normalization = Normalization.None });
        var clip = data.ReadTest(0);   // frames 1, 3, 5, 7 (segment middles of 8): gray values 30, 90, 150, 210
        Assert.Equal(3 * 4 * 64, clip.Length);
        for (int t = 0; t < 4; t++) Assert.Equal((60 * t + 30) / 255f, clip[(2 * 4 + t) * 64 + 17], 5);
        Assert.Equal(1, data.Label(0));
    }

    [Fact]
    public void Decoded_frames_are_kept_between_reads_until_the_clip_folder_changes()
    {
        string root = TestFiles.TempDir();
        string dir = Folder(root, "a", 8);
        File.WriteAllText(Path.Combine(root, "list.txt"), "a 8 1\n");
        var sampler = new ClipSampler(SamplingMode.Segment, 4);
        var transform = new ClipTransform { Size = 8, Normalization = Normalization.None };
        var cache = new FrameCache(1 << 20);
        string list = Path.Combine(root, "list.txt");
        var cached = new ClipDataset(ClipList.Read(list, root), 2, sampler, transform, list) { Cache = cache };
        var first = cached.ReadTest(0);
        Assert.Equal(4 * 8 * 8 * 3, cache.CachedBytes);   // the 4 sampled frames of 8×8 RGB
        // The frame files gone (the folder's time kept): the cache still serves the clip, an uncached dataset cannot.
        var stamp = Directory.GetLastWriteTimeUtc(dir);
        foreach (var f in Directory.GetFiles(dir)) File.Delete(f);
        Directory.SetLastWriteTimeUtc(dir, stamp);
        Assert.Equal(first, cached.ReadTest(0));
        var uncached = new ClipDataset(ClipList.Read(list, root), 2, sampler, transform, list) { Cache = null };
        Assert.Throws<PeftSharpException>(() => uncached.ReadTest(0));
        // Rewritten frames (gray 255 - 30 f) in a folder with a new time are read afresh.
        for (int f = 0; f < 8; f++)
            File.WriteAllBytes(Path.Combine(dir, $"img_{f + 1:D5}.png"), PngOf(Enumerable.Repeat((byte)(255 - f * 30), 8 * 8 * 3).ToArray()));
        Directory.SetLastWriteTimeUtc(dir, stamp.AddSeconds(1));
        var fresh = cached.ReadTest(0);
        for (int t = 0; t < 4; t++) Assert.Equal((255 - (60 * t + 30)) / 255f, fresh[(2 * 4 + t) * 64 + 17], 5);
    }

    [Fact]
    public void Bad_clips_are_one_line_naming_the_clip_and_exit_2()
    {
        string root = TestFiles.TempDir();
        Folder(root, "short", 3);
        Folder(root, "fine", 8);
        File.WriteAllBytes(Path.Combine(root, "empty.mp4"), Array.Empty<byte>());
        void Expect(string list, string must)
        {
            File.WriteAllText(Path.Combine(root, "list.txt"), list);
            var r = CliRunner.Run("clips", "--list", Path.Combine(root, "list.txt"), "--root", root, "--classes", "3", "--frames", "4", "--size", "8");
            Assert.Equal(2, r.ExitCode);
            var lines = r.Stderr.Trim().Split('\n');
            Assert.Single(lines);
            Assert.Contains(must, lines[0]);
        }
        Expect("short 3 0\n", "short: has 3 frames; the segment sampler needs at least 4");
        Expect("fine 8\n", "clip 'fine': expected 'clip_dir num_frames label' (a rawframe folder), got 2 fields (no label)");
        Expect("empty.mp4 1\n", "empty.mp4: zero-length video file");
        var ok = CliRunner.Run("clips", "--list", WriteList(root, "fine 8 2\n"), "--root", root, "--classes", "3", "--frames", "4", "--size", "8");
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("1 clips, 4 frames each", ok.Stdout);
    }

    static string WriteList(string root, string text)
    {
        string path = Path.Combine(root, "ok.txt");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Video_files_decode_through_ffmpeg_or_name_the_missing_ffmpeg()
    {
        string root = TestFiles.TempDir();
        string video = Path.Combine(root, "v.mp4");
        File.WriteAllBytes(video, new byte[] { 1, 2, 3 });   // not a video
        var saved = Environment.GetEnvironmentVariable("PATH");
        try
        {
            Environment.SetEnvironmentVariable("PATH", root);
            var e = Assert.Throws<PeftSharpException>(() => new FfmpegReader(video));
            Assert.StartsWith(video + ": decoding video files needs ffmpeg, which is not on PATH", e.Message);
        }
        finally { Environment.SetEnvironmentVariable("PATH", saved); }
        bool hasFfmpeg = (saved ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "ffmpeg")));
        if (!hasFfmpeg) return;
        var bad = Assert.Throws<PeftSharpException>(() => new FfmpegReader(video));
        Assert.StartsWith(video + ": unreadable", bad.Message);
        // 12 frames of ffmpeg's test pattern at 32×24: decoded at their own size.
        var p = System.Diagnostics.Process.Start("ffmpeg", $"-v error -y -f lavfi -i testsrc=size=32x24:rate=12:duration=1 -pix_fmt yuv420p \"{Path.Combine(root, "t.mp4")}\"");
        p!.WaitForExit();
        var reader = new FfmpegReader(Path.Combine(root, "t.mp4"));
        Assert.Equal(12, reader.FrameCount);
        Assert.Equal((32, 24), (reader.Frame(0).Width, reader.Frame(0).Height));
    }

    [Fact]
    public void St_adapter_mixes_time_only_and_starts_as_identity()
    {
        manual_seed(5);
        var adapter = new SpaceTimeAdapter(4, 2, 3, 1);
        var layout = new TokenLayout(1, 2, 2, 3);   // class token + 3 frames of 2×2
        var x = randn(1, 13, 4);
        using (no_grad())
        {
            TensorAssert.Identical(x, adapter.Apply(InsertionPoint.BlockInput, x, layout));
            // fc1 = identity on channels 0..1, conv = sum of the previous and next frame, fc2 = back to channels 0..1.
            adapter.fc1.weight!.copy_(eye(2, 4));
            adapter.conv.weight!.zero_();
            adapter.conv.weight![.., .., 0].fill_(1);
            adapter.conv.weight![.., .., 2].fill_(1);
            adapter.fc2.weight!.copy_(eye(4, 2));
            var y = adapter.Apply(InsertionPoint.BlockInput, x, layout);
            TensorAssert.Identical(x[.., ..1], y[.., ..1]);   // the class token passes through
            // Token of frame 1 at grid cell 3 (index 1 + 4 + 3): + channel values of frames 0 and 2 at cell 3.
            var expected = x[0, 8, ..2] + x[0, 4, ..2] + x[0, 12, ..2];
            TensorAssert.Close(expected, y[0, 8, ..2], atol: 1e-6);
            TensorAssert.Close(x[0, 8, 2..], y[0, 8, 2..], atol: 1e-6);
            // Frame 0 has no previous frame (zero padding): + frame 1 only.
            TensorAssert.Close(x[0, 1, ..2] + x[0, 5, ..2], y[0, 1, ..2], atol: 1e-6);
        }
    }

    [Fact]
    public void St_adapter_refuses_image_models_and_bapat_offsets_only_keys_and_values()
    {
        using var image = new VisionTransformer(new VitConfig { ImgSize = 16, PatchSize = 8, EmbedDim = 8, Depth = 1, NumHeads = 2, NumClasses = 3 });
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(image, "st-adapter"));
        Assert.Contains("applies to the video ViT only", e.Message);
        var qkv = (TorchSharp.Modules.Linear)image.blocks[0].attn.qkv;
        var x = randn(2, 5, 8);
        Tensor before;
        using (no_grad()) before = qkv.forward(x);
        var peft = PeftModel.Create(image, "bapat");
        var wrapper = (KeyValueOffset)image.blocks[0].attn.qkv;
        using var _ = no_grad();
        var after = wrapper.forward(x);
        TensorAssert.Close(before[.., .., ..8], after[.., .., ..8], atol: 1e-6);   // queries untouched
        var offset = wrapper.up.forward(wrapper.down.forward(x).tanh()) * 0.2;
        TensorAssert.Close(before[.., .., 8..] + offset, after[.., .., 8..], atol: 1e-6);
        Assert.Equal(8 * 64 + 64 + 64 * 16 + 16, peft.CountTrainable());
    }
}
