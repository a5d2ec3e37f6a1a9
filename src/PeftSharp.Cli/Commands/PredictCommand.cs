using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Inference;
using TorchSharp;

namespace PeftSharp.Cli.Commands;

/// <summary>Classifies image files with a trained model and prints the top classes by name.</summary>
public sealed class PredictCommand : ICommand
{
    public string Name => "predict";
    public string Summary => "classify image files, folders or lists: top-k class names with probabilities";
    public IEnumerable<string> Flags => new[] { "help", "force-base" };
    public string Usage => """
        peftsharp predict [--checkpoint FILE] [--adapter DIR] [--force-base] [--top N (5)] [--format table|json|csv]
                          [--normalization NAME] [--batch-size N (64)] [--device cpu|cuda] IMAGE|FOLDER|LIST.txt ...
          The model is a merged checkpoint, or a base checkpoint with adapter files (without --checkpoint: the
          adapter's recorded base, else the shipped backbone). Images go through the preprocessing the model
          records, exactly as in eval. Folders are searched recursively; a .txt list names one image per line.
        """;

    public int Run(CommandLine line)
    {
        var source = EvalCommand.ClassifierOptions(line);
        int top = line.Int("top", 5), batchSize = line.Int("batch-size", 64);
        string format = line.Get("format") ?? "table";
        var device = Devices.Parse(line.Get("device"));
        line.RejectUnknown(maxPositional: int.MaxValue);
        if (format is not ("table" or "json" or "csv")) throw new PeftSharpException($"predict: --format must be table, json or csv (got '{format}')");
        if (batchSize < 1) throw new PeftSharpException($"predict: --batch-size must be at least 1 (got {batchSize})");
        if (line.Positional.Count == 0) throw new PeftSharpException("predict: name at least one image file, folder or .txt list");

        var files = ImageFiles.Collect(line.Positional);
        using var classifier = Classifier.Load(source);
        classifier.Model.to(device);
        var predictions = Predictor.Predict(classifier, files, top, batchSize);
        Console.Write(format switch
        {
            "json" => Json(predictions),
            "csv" => Csv(predictions),
            _ => Table(predictions),
        });
        return 0;
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

    static string Json(IReadOnlyList<ImagePrediction> predictions) =>
        new JsonArray(predictions.Select(p => (JsonNode)new JsonObject
        {
            ["file"] = p.File,
            ["top"] = new JsonArray(p.Top.Select(s => (JsonNode)new JsonObject { ["label"] = s.Label, ["class"] = s.Name, ["probability"] = s.Probability }).ToArray()),
        }).ToArray()).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    static string Csv(IReadOnlyList<ImagePrediction> predictions)
    {
        var text = new System.Text.StringBuilder("file,rank,label,class,probability\n");
        foreach (var p in predictions)
            for (int r = 0; r < p.Top.Count; r++)
                text.Append($"{Quote(p.File)},{r + 1},{p.Top[r].Label},{Quote(p.Top[r].Name)},{p.Top[r].Probability.ToString("R", CultureInfo.InvariantCulture)}\n");
        return text.ToString();
    }

    static string Quote(string field) =>
        field.IndexOfAny([',', '"', '\n']) >= 0 ? "\"" + field.Replace("\"", "\"\"") + "\"" : field;
}
