using System.Text.Json.Nodes;
using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>A distribution shift: a deterministic corruption of every image of a task, at a graded severity
/// (1 mild … 5 severe, in the spirit of ImageNet-C; <c>invert</c> has one).</summary>
public sealed record ShiftInfo(string Name, string Family, int Severity, string Description);

/// <summary>A shifted copy of a task, written in the VTAB-1K layout.</summary>
public sealed record MaterializedShift(string Task, string Shift, string Directory, bool Reused);

/// <summary>
/// Shifted test sets for the robustness study, made offline and deterministically: Gaussian noise, Gaussian blur and
/// reduced contrast at five severities each, and colour inversion. A shifted task is a VTAB-layout folder
/// (TASK@SHIFT) with the same lists and labels as its source, every image corrupted; the noise of an image is seeded
/// by the shift's and the image's names, so the same folder comes out on every machine.
/// </summary>
public static class Shifts
{
    const int Version = 1;
    const string MarkerFile = "shift.json";
    static readonly double[] NoiseSigma = { 8, 16, 24, 32, 48 };       // in 0–255 units
    static readonly double[] BlurSigma = { 0.5, 0.8, 1.1, 1.5, 2.0 };  // in pixels of the stored image
    static readonly double[] Contrast = { 0.75, 0.6, 0.45, 0.3, 0.2 }; // the fraction of the deviation from the mean kept

    public static IReadOnlyList<ShiftInfo> All { get; } =
        Enumerable.Range(1, 5).Select(s => new ShiftInfo($"gaussian-noise-{s}", "gaussian-noise", s, $"Gaussian noise, σ = {NoiseSigma[s - 1]} grey levels per channel"))
        .Concat(Enumerable.Range(1, 5).Select(s => new ShiftInfo($"blur-{s}", "blur", s, $"Gaussian blur, σ = {BlurSigma[s - 1]} px")))
        .Concat(Enumerable.Range(1, 5).Select(s => new ShiftInfo($"contrast-{s}", "contrast", s, $"contrast reduced to {Contrast[s - 1]:P0} around the image mean")))
        .Append(new ShiftInfo("invert", "invert", 1, "colours inverted (255 − value)"))
        .ToList();

    public static ShiftInfo Get(string name) =>
        All.FirstOrDefault(s => s.Name == name)
        ?? throw new PeftSharpException($"unknown shift '{name}'; expected one of {string.Join(", ", All.Select(s => s.Name))}");

    /// <summary>The suite's natural tasks, the ones the study shifts (structured tasks' labels are geometry, which
    /// most of these corruptions do not keep meaningful).</summary>
    public static IReadOnlyList<string> NaturalTasks => MiniVtab.Tasks.Where(t => t.Group == TaskGroup.Natural).Select(t => t.Name).ToList();

    /// <summary>The folder name of a shifted task.</summary>
    public static string FolderName(string task, string shift) => $"{task}@{shift}";

    /// <summary>Writes the shifted copy of the VTAB task in <paramref name="taskDirectory"/> to
    /// OUTPUT/TASK@SHIFT; a complete copy of the same source and shift is left as it is.</summary>
    public static MaterializedShift Materialize(string taskDirectory, string shiftName, string outputDir)
    {
        var shift = Get(shiftName);
        var source = VtabTask.Open(taskDirectory);
        string dir = Path.GetFullPath(Path.Combine(outputDir, FolderName(source.Name, shift.Name)));
        string marker = new JsonObject { ["source"] = source.Name, ["shift"] = shift.Name, ["version"] = Version }.ToJsonString();
        string markerPath = Path.Combine(dir, MarkerFile);
        if (File.Exists(markerPath) && File.ReadAllText(markerPath) == marker) return new MaterializedShift(source.Name, shift.Name, dir, true);

        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        var images = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var split in VtabTask.SplitNames)
        {
            string list = Path.Combine(source.Directory, split + ".txt");
            File.Copy(list, Path.Combine(dir, split + ".txt"));
            foreach (var entry in ListFile.Read(list, skipBad: false, new List<SkippedEntry>())) images.Add(entry.RelativePath);
        }
        string classes = Path.Combine(source.Directory, VtabTask.ClassNamesFile);
        if (File.Exists(classes)) File.Copy(classes, Path.Combine(dir, VtabTask.ClassNamesFile));
        Parallel.ForEach(images, relative =>
        {
            var image = ImageDecoder.Decode(Path.Combine(source.Directory, relative));
            var shifted = Apply(shift, image, SuiteRng.Mix(SuiteRng.Hash(shift.Name), SuiteRng.Hash(relative)));
            string target = Path.Combine(dir, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.WriteAllBytes(target, SuiteImage.Rgb(shifted.Width, shifted.Height, shifted.Pixels).ToPng());
        });
        File.WriteAllText(markerPath, marker);   // last: the folder counts as complete only with it
        return new MaterializedShift(source.Name, shift.Name, dir, false);
    }

    /// <summary>The corrupted image; <paramref name="seed"/> drives the noise.</summary>
    public static RgbImage Apply(ShiftInfo shift, RgbImage image, ulong seed)
    {
        var pixels = (byte[])image.Pixels.Clone();
        switch (shift.Family)
        {
            case "gaussian-noise":
                PixelOps.AddNoise(pixels, NoiseSigma[shift.Severity - 1], new SuiteRng(seed));
                break;
            case "blur":
                BlurChannels(pixels, image.Width, image.Height, BlurSigma[shift.Severity - 1]);
                break;
            case "contrast":
                double mean = pixels.Average(b => (double)b), keep = Contrast[shift.Severity - 1];
                for (int i = 0; i < pixels.Length; i++) pixels[i] = PixelOps.ClampByte(mean + keep * (pixels[i] - mean));
                break;
            case "invert":
                for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(255 - pixels[i]);
                break;
            default:
                throw new PeftSharpException($"shift family '{shift.Family}' has no corruption");
        }
        return new RgbImage(image.Width, image.Height, pixels);
    }

    static void BlurChannels(byte[] pixels, int width, int height, double sigma)
    {
        for (int c = 0; c < 3; c++)
        {
            var plane = new float[width * height];
            for (int p = 0; p < plane.Length; p++) plane[p] = pixels[3 * p + c];
            var blurred = PixelOps.Blur(plane, width, height, sigma);
            for (int p = 0; p < plane.Length; p++) pixels[3 * p + c] = PixelOps.ClampByte(blurred[p]);
        }
    }
}
