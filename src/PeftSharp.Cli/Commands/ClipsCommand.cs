using System.Diagnostics;
using PeftSharp.Video;

namespace PeftSharp.Cli.Commands;

/// <summary>Checks a clip list the way training reads it: every clip opened, sampled and decoded once.</summary>
public sealed class ClipsCommand : ICommand
{
    public string Name => "clips";
    public string Summary => "check a video clip list (rawframe folders or video files): every clip read as training would";
    public string Usage => """
        peftsharp clips --list FILE --root DIR --classes N [--sampling segment|dense] [--frames 8] [--interval 4] [--size 224]
          Reads the list (mmaction rawframes 'clip_dir num_frames label' or videos 'video_file label', paths under
          DIR), samples and decodes every clip once, and prints the count and the decoding time per clip. A bad clip
          (too few frames, unreadable or zero-length video, a line without a label, ffmpeg missing for a video) is
          one line naming it, exit code 2.
        """;

    public int Run(CommandLine line)
    {
        string list = line.Get("list") ?? throw new PeftSharpException("list", "clips: --list FILE is required");
        string root = line.Get("root") ?? Path.GetDirectoryName(Path.GetFullPath(list))!;
        int classes = line.Int("classes", 0);
        if (classes < 1) throw new PeftSharpException("classes", "clips: --classes N (the number of classes) is required");
        var sampler = new ClipSampler(ClipSampler.ParseMode(line.Get("sampling") ?? "segment"), line.Int("frames", 8), line.Int("interval", 4));
        var transform = new ClipTransform { Size = line.Int("size", 224) };
        line.RejectUnknown();
        var data = ClipDataset.FromList(list, root, classes, sampler, transform);
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < data.Count; i++) data.ReadTest(i);
        Console.WriteLine($"{list}: {data.Count} clips, {sampler.Frames} frames each ({sampler.Mode.ToString().ToLowerInvariant()} sampling), {1000 * watch.Elapsed.TotalSeconds / data.Count:F1} ms to decode a clip");
        return 0;
    }
}
