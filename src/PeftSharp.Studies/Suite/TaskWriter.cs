using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using PeftSharp.Data;
using SkiaSharp;

namespace PeftSharp.Suite;

/// <summary>How to produce one split: its labels, and a function that renders item i (called from parallel workers).</summary>
internal sealed record SplitPlan(string Name, int[] Labels, Func<RenderContext, int, SuiteImage> Render);

/// <summary>The three splits of a task; train800val200 is train followed by val.</summary>
internal sealed record TaskPlan(SplitPlan Train, SplitPlan Val, SplitPlan Test)
{
    public IEnumerable<SplitPlan> All => [Train, Val, Test];
}

/// <summary>Per-worker drawing state, so parallel rendering shares no Skia objects between threads.</summary>
internal sealed class RenderContext : IDisposable
{
    SKBitmap? _bitmap;
    SKCanvas? _canvas;

    /// <summary>A cleared canvas of the given square size, reused across calls on this worker.</summary>
    public SKCanvas Canvas(int size)
    {
        if (_bitmap == null || _bitmap.Width != size)
        {
            Dispose();
            _bitmap = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Premul));
            _canvas = new SKCanvas(_bitmap);
        }
        _canvas!.ResetMatrix();
        _canvas.Clear(SKColors.Black);
        return _canvas;
    }

    /// <summary>The canvas's pixels as RGB bytes (the canvas is opaque, so premultiplication changes nothing).</summary>
    public byte[] ReadRgb()
    {
        _canvas!.Flush();
        return PeftSharp.Data.ImageDecoder.DropAlpha(_bitmap!.GetPixelSpan(), _bitmap.Width * _bitmap.Height);
    }

    public void Dispose()
    {
        _canvas?.Dispose();
        _bitmap?.Dispose();
        _canvas = null;
        _bitmap = null;
    }
}

/// <summary>Writes a task folder in the VTAB-1K layout and recognises one that is already complete.</summary>
internal static class TaskWriter
{
    public const string TaskFile = "task.json";
    // Relaxed escaping keeps "×", "−" and "°" readable in task.json.
    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The task.json text for a task generated with <paramref name="seed"/>; equal text means equal content.</summary>
    public static string TaskJson(SuiteTaskInfo info, TaskPlan plan, int seed) =>
        JsonSerializer.Serialize(new
        {
            name = info.Name,
            group = info.GroupName,
            num_classes = info.NumClasses,
            image_width = info.ImageWidth,
            image_height = info.ImageHeight,
            channels = info.Grayscale ? 1 : 3,
            train = plan.Train.Labels.Length,
            val = plan.Val.Labels.Length,
            test = plan.Test.Labels.Length,
            seed,
            generator_version = MiniVtab.GeneratorVersion,
            provenance = info.Provenance,
            licence = info.Licence,
        }, JsonOptions) + "\n";

    /// <summary>True when task.json matches and every list and listed image is present.</summary>
    public static bool IsComplete(string dir, string taskJson, TaskPlan plan)
    {
        string jsonPath = Path.Combine(dir, TaskFile);
        if (!File.Exists(jsonPath) || File.ReadAllText(jsonPath) != taskJson) return false;
        if (!File.Exists(Path.Combine(dir, VtabTask.ClassNamesFile))) return false;
        var expected = new Dictionary<string, int>
        {
            ["train800"] = plan.Train.Labels.Length,
            ["val200"] = plan.Val.Labels.Length,
            ["train800val200"] = plan.Train.Labels.Length + plan.Val.Labels.Length,
            ["test"] = plan.Test.Labels.Length,
        };
        foreach (var (list, count) in expected)
        {
            string path = Path.Combine(dir, list + ".txt");
            if (!File.Exists(path)) return false;
            var lines = File.ReadLines(path).Where(l => l.Length > 0).ToList();
            if (lines.Count != count) return false;
            if (lines.Any(l => l.LastIndexOf(' ') <= 0 || !File.Exists(Path.Combine(dir, l[..l.LastIndexOf(' ')])))) return false;
        }
        return true;
    }

    /// <summary>
    /// Writes the task afresh: the folder is emptied first (it is the suite's own output), images are rendered and
    /// encoded in parallel, and task.json goes last so an interrupted run is never taken as complete.
    /// </summary>
    public static void Write(string dir, SuiteTaskInfo info, TaskPlan plan, string taskJson)
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        var lines = new Dictionary<string, string[]>();
        foreach (var split in plan.All)
        {
            Directory.CreateDirectory(Path.Combine(dir, split.Name));
            lines[split.Name] = WriteImages(dir, split);
        }
        WriteLines(Path.Combine(dir, "train800.txt"), lines[plan.Train.Name]);
        WriteLines(Path.Combine(dir, "val200.txt"), lines[plan.Val.Name]);
        WriteLines(Path.Combine(dir, "train800val200.txt"), [.. lines[plan.Train.Name], .. lines[plan.Val.Name]]);
        WriteLines(Path.Combine(dir, "test.txt"), lines[plan.Test.Name]);
        WriteLines(Path.Combine(dir, VtabTask.ClassNamesFile), info.ClassNames);
        File.WriteAllText(Path.Combine(dir, TaskFile), taskJson);
    }

    static string[] WriteImages(string dir, SplitPlan split)
    {
        var lines = new string[split.Labels.Length];
        Parallel.For(0, split.Labels.Length, () => new RenderContext(), (i, _, context) =>
        {
            string relative = $"{split.Name}/{i:D5}.png";
            File.WriteAllBytes(Path.Combine(dir, relative), split.Render(context, i).ToPng());
            lines[i] = string.Create(CultureInfo.InvariantCulture, $"{relative} {split.Labels[i]}");
            return context;
        }, context => context.Dispose());
        return lines;
    }

    static void WriteLines(string path, IEnumerable<string> lines)
    {
        var text = new StringBuilder();
        foreach (string line in lines) text.Append(line).Append('\n');
        File.WriteAllText(path, text.ToString());
    }
}
