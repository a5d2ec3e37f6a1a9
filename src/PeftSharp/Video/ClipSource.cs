using System.Diagnostics;
using System.Globalization;
using PeftSharp.Data;

namespace PeftSharp.Video;

/// <summary>One labelled clip of a list file: a folder of frames (mmaction's rawframes) or a video file.</summary>
public sealed record ClipEntry(string Path, int Label, int? ListedFrames, int LineNumber)
{
    public bool IsVideoFile => ListedFrames is null;
}

/// <summary>
/// mmaction's list files. Rawframes: "clip_dir num_frames label" (frames img_00001.jpg … in the folder, any image
/// extension); videos: "video_file label" (decoded through ffmpeg). Paths are relative to the root folder.
/// A line whose path is a folder must have three fields, a file two: a missing label is an error naming the line.
/// </summary>
public static class ClipList
{
    public static List<ClipEntry> Read(string listFile, string root)
    {
        if (!File.Exists(listFile)) throw new PeftSharpException($"{listFile}: list file not found");
        var entries = new List<ClipEntry>();
        int number = 0;
        foreach (var raw in File.ReadLines(listFile))
        {
            number++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            string where = $"{listFile}:{number}";
            string path = System.IO.Path.Combine(root, fields[0]);
            bool folder = Directory.Exists(path);
            if (folder && fields.Length != 3)
                throw new PeftSharpException($"{where}: clip '{fields[0]}': expected 'clip_dir num_frames label' (a rawframe folder), got {fields.Length} field{(fields.Length == 1 ? "" : "s")}{(fields.Length == 2 ? " (no label)" : "")}");
            if (!folder && fields.Length != 2)
                throw new PeftSharpException(File.Exists(path) || fields.Length != 3
                    ? $"{where}: clip '{fields[0]}': expected 'video_file label', got {fields.Length} field{(fields.Length == 1 ? " (no label)" : "s")}"
                    : $"{where}: clip '{fields[0]}': no such frame folder under {root}");
            if (!folder && !File.Exists(path)) throw new PeftSharpException($"{where}: clip '{fields[0]}': no such video file under {root}");
            int? frames = folder ? ParseInt(fields[1], where, fields[0], "num_frames") : null;
            int label = ParseInt(fields[^1], where, fields[0], "label");
            entries.Add(new ClipEntry(path, label, frames, number));
        }
        if (entries.Count == 0) throw new PeftSharpException($"{listFile}: no clips listed");
        return entries;
    }

    static int ParseInt(string text, string where, string clip, string field) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value)
            ? value : throw new PeftSharpException($"{where}: clip '{clip}': {field} '{text}' is not a non-negative integer");
}

/// <summary>Reads the frames of one clip as RGB images.</summary>
public interface IClipReader
{
    /// <summary>How many frames the clip has.</summary>
    int FrameCount { get; }
    RgbImage Frame(int index);
}

/// <summary>A rawframe folder: its image files in name order (img_00001.jpg, …), the count checked against the list.</summary>
public sealed class FrameFolderReader : IClipReader
{
    readonly string[] files;
    readonly string folder;

    public FrameFolderReader(string folder, int? listedFrames)
    {
        this.folder = folder;
        files = Directory.EnumerateFiles(folder)
            .Where(f => ImageDecoder.ImageExtensions.Contains(System.IO.Path.GetExtension(f).ToLowerInvariant()))
            .OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (listedFrames is int n && n > files.Length)
            throw new PeftSharpException($"{folder}: the list says {n} frames, the folder has {files.Length} images");
        if (listedFrames is int m) files = files[..m];
    }

    public int FrameCount => files.Length;

    public RgbImage Frame(int index) =>
        ImageDecoder.TryDecode(files[index], out var image, out var error) ? image! : throw new PeftSharpException($"{folder}: frame {files[index]}: {error}");
}

/// <summary>A video file decoded through ffmpeg into raw RGB frames at the clip's own size (all frames at once: the
/// clips a classifier reads are seconds long). ffmpeg must be on PATH.</summary>
public sealed class FfmpegReader : IClipReader
{
    readonly RgbImage[] frames;

    public FfmpegReader(string path)
    {
        var (width, height) = Probe(path);
        var bytes = Run(path, "-v error -i \"" + path + "\" -f rawvideo -pix_fmt rgb24 -", out var error);
        int frameBytes = width * height * 3;
        if (bytes.Length == 0 || frameBytes == 0)
            throw new PeftSharpException($"{path}: unreadable or empty video (ffmpeg decoded no frames{(error.Length > 0 ? ": " + FirstLine(error) : "")})");
        frames = new RgbImage[bytes.Length / frameBytes];
        for (int i = 0; i < frames.Length; i++) frames[i] = new RgbImage(width, height, bytes.AsSpan(i * frameBytes, frameBytes).ToArray());
    }

    public int FrameCount => frames.Length;
    public RgbImage Frame(int index) => frames[index];

    /// <summary>Checks that a video file is there, not empty and readable (ffmpeg finds a video stream in its first
    /// frame) without decoding the rest.</summary>
    public static void Check(string path) => Probe(path);

    /// <summary>The path of ffmpeg, or a one-line error naming the clip that needed it.</summary>
    public static string RequireFfmpeg(string clip)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = System.IO.Path.Combine(dir, "ffmpeg");
            if (File.Exists(candidate)) return candidate;
        }
        throw new PeftSharpException($"{clip}: decoding video files needs ffmpeg, which is not on PATH (install it, e.g. apt-get install ffmpeg, or extract the frames into rawframe folders)");
    }

    static (int Width, int Height) Probe(string path)
    {
        if (new FileInfo(path).Length == 0) throw new PeftSharpException($"{path}: zero-length video file");
        // ffmpeg prints the stream's size to stderr when asked for nothing; one decoded frame's header is enough.
        Run(path, "-v info -i \"" + path + "\" -frames:v 1 -f null -", out var log);
        var match = System.Text.RegularExpressions.Regex.Match(log, @"Video: .*?, (\d{2,5})x(\d{2,5})");
        if (!match.Success) throw new PeftSharpException($"{path}: unreadable video (ffmpeg found no video stream{(log.Contains("Invalid data") ? ": invalid data" : "")})");
        return (int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    static byte[] Run(string path, string arguments, out string stderr)
    {
        var info = new ProcessStartInfo(RequireFfmpeg(path), "-nostdin " + arguments)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var process = Process.Start(info) ?? throw new PeftSharpException($"{path}: could not start ffmpeg");
        var errorTask = process.StandardError.ReadToEndAsync();
        using var output = new MemoryStream();
        process.StandardOutput.BaseStream.CopyTo(output);
        process.WaitForExit();
        stderr = errorTask.Result;
        return output.ToArray();
    }

    static string FirstLine(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim() ?? "";
}
