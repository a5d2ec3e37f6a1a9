using PeftSharp.Interop;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Inference;
using PeftSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Cli.Commands;

/// <summary>Classifies image files with a trained model and prints the top classes by name.</summary>
public sealed class PredictCommand : ICommand
{
    public string Name => "predict";
    public string Summary => "classify image files, folders or lists: top-k class names with probabilities";
    public IEnumerable<string> Flags => new[] { "help", "force-base", "clip" };
    public string Usage => """
        peftsharp predict [--checkpoint FILE] [--adapter DIR] [--force-base] [--top N (5)] [--format table|json|csv]
                          [--normalization NAME] [--batch-size N (64)] [--precision fp32|bf16|auto] [--device cpu|cuda]
                          IMAGE|FOLDER|LIST.txt ...
          The model is a merged checkpoint, or a base checkpoint with adapter files (without --checkpoint: the
          adapter's recorded base, else the shipped backbone). Images go through the preprocessing the model
          records, exactly as in eval. Folders are searched recursively; a .txt list names one image per line.
        peftsharp predict --clip --classes NAME,NAME,... | --classes-file FILE [--template "a photo of a {}." ...]
                          [--checkpoint CLIP.safetensors] [--adapter DIR] [--top N] [--format ...] IMAGE|FOLDER|LIST.txt ...
          CLIP zero-shot: each class is the mean text feature of its prompts (one per --template; default
          "a photo of a {}."); without --checkpoint the shipped CLIP model. --adapter applies a `clip train` adapter.
        peftsharp predict --adapter DIR --adapter DIR ... [--checkpoint FILE] [--force-base] [--top N] [--format ...]
                          [--batch-size N] [--device cpu|cuda] IMAGE|FOLDER|LIST.txt ...
          Several LoRA/DoRA adapters for different tasks on one backbone: every image goes to every adapter in one
          mixed batch, and each adapter (named by its folder) gives its own top classes. The adapters must record the
          same base checkpoint and preprocessing.
        peftsharp predict --adapter VIDEO_ADAPTER_DIR [--top N] [--format table|json] CLIP_DIR|VIDEO_FILE ...
          A video adapter classifies rawframe folders (every image in name order) and video files (ffmpeg) with
          the sampling and views it records.
        """;

    /// <summary>Several adapters on one backbone: each image through every adapter, one mixed batch per batch of images.</summary>
    static int RunMultiAdapter(CommandLine line)
    {
        var adapters = line.GetAll("adapter");
        string? checkpoint = line.Get("checkpoint");
        bool forceBase = line.Flag("force-base");
        var config = VitConfig.Resolve(line.Get("model"), line.Get("config"));
        int top = line.Int("top", 5), batchSize = line.Int("batch-size", 64);
        string format = line.Get("format") ?? "table";
        var device = Devices.Parse(line.Get("device"));
        foreach (var option in new[] { "clip", "classes", "classes-file", "template", "normalization", "precision" })
            if (line.Flag(option) || line.GetAll(option).Count > 0)
                throw new PeftSharpException($"predict: --{option} does not go with several adapters (each adapter records its preprocessing; the mixed batch runs in fp32)");
        line.RejectUnknown(maxPositional: int.MaxValue);
        if (format is not ("table" or "json" or "csv")) throw new PeftSharpException($"predict: --format must be table, json or csv (got '{format}')");
        if (batchSize < 1) throw new PeftSharpException($"predict: --batch-size must be at least 1 (got {batchSize})");
        if (line.Positional.Count == 0) throw new PeftSharpException("predict: name at least one image file, folder or .txt list");
        var files = ImageFiles.Collect(line.Positional);
        using var classifier = PeftSharp.MultiAdapter.MultiAdapterClassifier.Load(checkpoint, adapters, config, forceBase);
        classifier.Model.to(device);
        var predictions = classifier.Predict(files, top, batchSize);
        // One row per image and adapter.
        var rows = predictions.SelectMany(perAdapter => perAdapter).ToList();
        var names = rows.Select(r => r.Adapter).ToList();
        Console.Write(format switch
        {
            "json" => Json(rows.Select(r => r.Prediction).ToList(), names),
            "csv" => Csv(rows.Select(r => r.Prediction).ToList(), names),
            _ => Table(rows.Select(r => r.Prediction with { File = $"{r.Prediction.File} [{r.Adapter}]" }).ToList()),
        });
        return 0;
    }

    public int Run(CommandLine line)
    {
        if (line.GetAll("adapter").Count > 1) return RunMultiAdapter(line);
        // A video adapter says so in its config: the clips, sampling and classes come from it.
        if (line.Get("adapter") is string adapter && Tuners.AdapterFiles.ReadKind(adapter) == Video.VideoAdapter.Kind) return VideoCli.Predict(line);
        bool clip = line.Flag("clip");
        var source = EvalCommand.ClassifierOptions(line);
        var classes = line.Get("classes")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                      ?? (line.Get("classes-file") is string file ? ReadClassFile(file) : null);
        var templates = line.GetAll("template");
        int top = line.Int("top", 5), batchSize = line.Int("batch-size", 64);
        string format = line.Get("format") ?? "table";
        var device = Devices.Parse(line.Get("device"));
        line.Get("precision");   // read below, once the model is known
        line.RejectUnknown(maxPositional: int.MaxValue);
        if (format is not ("table" or "json" or "csv")) throw new PeftSharpException($"predict: --format must be table, json or csv (got '{format}')");
        if (batchSize < 1) throw new PeftSharpException($"predict: --batch-size must be at least 1 (got {batchSize})");
        if (line.Positional.Count == 0) throw new PeftSharpException("predict: name at least one image file, folder or .txt list");

        if (clip != (classes != null)) throw new PeftSharpException(clip ? "predict: --clip needs the classes (--classes a,b,c or --classes-file FILE)" : "predict: --classes and --classes-file go with --clip (zero-shot CLIP)");
        if (!clip && templates.Count > 0) throw new PeftSharpException("predict: --template goes with --clip");

        var files = ImageFiles.Collect(line.Positional);
        using IImageClassifier classifier = clip ? ZeroShot(source, classes!, templates, device) : Trained(source, device);
        var precision = SharedOptions.Precision(line, () => classifier is ZeroShotClassifier zeroShot ? zeroShot.Config.Vision : ((Classifier)classifier).Model.Config, batchSize);
        var predictions = Predictor.Predict(classifier, files, top, batchSize, precision);
        Console.Write(format switch
        {
            "json" => Json(predictions),
            "csv" => Csv(predictions),
            _ => Table(predictions),
        });
        return 0;
    }

    static Classifier Trained(ClassifierSource source, Device device)
    {
        var classifier = Classifier.Load(source);
        classifier.Model.to(device);
        return classifier;
    }

    static ZeroShotClassifier ZeroShot(ClassifierSource source, IReadOnlyList<string> classes, IReadOnlyList<string> templates, Device device)
    {
        if (source.Preset != null || source.ConfigJson != null || source.Normalization != null || source.ForceBase)
            throw new PeftSharpException("predict --clip: the CLIP checkpoint records its architecture and normalisation; --model, --config, --normalization and --force-base do not apply");
        if (device.type != DeviceType.CPU) throw new PeftSharpException("predict --clip: runs on the CPU only");
        return ZeroShotClassifier.Load(source.Checkpoint, source.Adapter, classes, templates);
    }

    static string[] ReadClassFile(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: class file not found; expected one class name per line");
        return File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
    }

    static string Table(IReadOnlyList<ImagePrediction> predictions)
    {
        int width = Math.Min(60, predictions.Max(p => p.File.Length));
        var text = new System.Text.StringBuilder();
        foreach (var p in predictions)
        {
            string file = p.File.Length > width ? "…" + p.File[^(width - 1)..] : p.File;
            text.Append(file.PadRight(width)).Append("  ")
                .Append(string.Join("  ", p.Top.Select(s => $"{s.Name} {(100 * s.Probability).ToString("F1", CultureInfo.InvariantCulture)}%")))
                .Append('\n');
        }
        return text.ToString();
    }

    /// <param name="adapters">With several adapters: the adapter of each prediction.</param>
    static string Json(IReadOnlyList<ImagePrediction> predictions, IReadOnlyList<string>? adapters = null) =>
        new JsonArray(predictions.Select((p, i) =>
        {
            var o = new JsonObject { ["file"] = p.File };
            if (adapters != null) o["adapter"] = adapters[i];
            o["top"] = new JsonArray(p.Top.Select(s => (JsonNode)new JsonObject { ["label"] = s.Label, ["class"] = s.Name, ["probability"] = s.Probability }).ToArray());
            return (JsonNode)o;
        }).ToArray()).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    static string Csv(IReadOnlyList<ImagePrediction> predictions, IReadOnlyList<string>? adapters = null)
    {
        var text = new System.Text.StringBuilder(adapters == null ? "file,rank,label,class,probability\n" : "file,adapter,rank,label,class,probability\n");
        for (int i = 0; i < predictions.Count; i++)
            for (int r = 0, n = predictions[i].Top.Count; r < n; r++)
            {
                var p = predictions[i];
                text.Append($"{Quote(p.File)},{(adapters == null ? "" : Quote(adapters[i]) + ",")}{r + 1},{p.Top[r].Label},{Quote(p.Top[r].Name)},{p.Top[r].Probability.ToString("R", CultureInfo.InvariantCulture)}\n");
            }
        return text.ToString();
    }

    static string Quote(string field) =>
        field.IndexOfAny([',', '"', '\n']) >= 0 ? "\"" + field.Replace("\"", "\"\"") + "\"" : field;
}
