using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Export;
using PeftSharp.Inference;
using PeftSharp.Tuners;

namespace PeftSharp.Cli.Commands;

/// <summary>Writes a trained ViT (merged with its adapter), or a CLIP tower, as an ONNX model for ONNX Runtime.</summary>
public sealed class ExportCommand : ICommand
{
    public string Name => "export";
    public string Summary => "export a model (merged with its adapter) or a CLIP tower to ONNX for ONNX Runtime: opset 17, dynamic batch";
    public IEnumerable<string> Flags => new[] { "help", "force-base", "clip" };
    public string Usage => $"""
        peftsharp export --onnx OUT.onnx [--checkpoint FILE] [--adapter DIR] [--force-base]
          Folds the adapter into the weights (mergeable methods; the others are refused) and writes the ViT as ONNX:
          input '{OnnxExport.InputName}' [batch, 3, S, S] preprocessed as the model records, output '{OnnxExport.OutputName}'
          [batch, classes]. The preprocessing and class names go into the model's metadata ('{Preprocessing.MetadataKey}',
          '{Classifier.ClassNamesKey}').
        peftsharp export --onnx OUT.onnx --clip --tower image|text [--checkpoint CLIP.safetensors] [--adapter DIR]
          One CLIP tower (the shipped CLIP model without --checkpoint; a `clip train` adapter merged first). image:
          input '{OnnxExport.InputName}' [batch, 3, S, S], output '{OnnxExport.ImageEmbedsName}' [batch, embed]; text: input
          '{OnnxExport.TextInputName}' int64 [batch, context] (CLIP BPE ids padded with 0), output '{OnnxExport.TextOutputName}'
          [batch, embed]. Embeddings are projected, not normalised.
        """;

    public int Run(CommandLine line)
    {
        bool clip = line.Flag("clip");
        string? tower = line.Get("tower");
        var source = EvalCommand.ClassifierOptions(line);
        string output = line.Require("onnx");
        line.RejectUnknown();
        if (!output.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
            throw new PeftSharpException($"export: --onnx {output}: expected a .onnx file name");
        if (clip != (tower != null)) throw new PeftSharpException(clip ? "export --clip: name the tower to export (--tower image or --tower text)" : "export: --tower goes with --clip");
        WritableFolder.Require(Path.GetDirectoryName(Path.GetFullPath(output))!, "the ONNX model");
        if (clip) return ExportClip(source, tower!, output);
        if (source.Checkpoint is string file && LooksLikeClip(file))
            throw new PeftSharpException($"{file}: a CLIP checkpoint; export one of its towers (--clip --tower image or --tower text)");

        using var classifier = Classifier.Load(source);
        classifier.MergeAndUnload();
        OnnxExport.Save(classifier.Model, output, classifier.Metadata());
        Console.WriteLine($"{output}: {classifier.Method} on {Path.GetFileName(classifier.Checkpoint)} as ONNX opset {OnnxExport.Opset} ({classifier.NumClasses} classes, {classifier.Preprocessing}; {new FileInfo(output).Length / 1e6:F1} MB)");
        return 0;
    }

    /// <summary>open_clip's text-tower keys, which no ViT checkpoint has.</summary>
    static bool LooksLikeClip(string path)
    {
        if (!File.Exists(path)) return false;
        using var file = SafeTensorsFile.Open(path);
        return file.Contains("text_projection") || file.Contains("positional_embedding");
    }

    static int ExportClip(ClassifierSource source, string tower, string output)
    {
        if (tower is not ("image" or "text")) throw new PeftSharpException($"export: --tower must be image or text (got '{tower}')");
        if (source.Preset != null || source.ConfigJson != null || source.Normalization != null || source.ForceBase)
            throw new PeftSharpException("export --clip: the CLIP checkpoint records its architecture and normalisation; --model, --config, --normalization and --force-base do not apply");
        string checkpoint = source.Checkpoint ?? ShippedModels.RequireDefaultClip();
        using var model = ModelCheckpoints.LoadClip(checkpoint).Model;
        string method = "none";
        if (source.Adapter != null)
        {
            var peft = AdapterFiles.Load(model, source.Adapter);
            method = peft.MethodSpec;
            peft.MergeAndUnload();
        }
        model.eval();
        if (tower == "image")
        {
            var preprocessing = new Preprocessing(model.Config.Vision.ImgSize, Normalization.FromName(ModelCheckpoints.ReadNormalization(checkpoint) ?? "inception"));
            OnnxExport.SaveClipImageTower(model, output, new Dictionary<string, string> { [Preprocessing.MetadataKey] = preprocessing.ToJson().ToJsonString() });
        }
        else
            OnnxExport.SaveClipTextTower(model, output, new Dictionary<string, string> { ["tokenizer"] = "clip-bpe", ["context_length"] = model.Config.Text.ContextLength.ToString() });
        Console.WriteLine($"{output}: CLIP {tower} tower ({method}) of {Path.GetFileName(checkpoint)} as ONNX opset {OnnxExport.Opset} ({model.Config.EmbedDim}-wide embeddings; {new FileInfo(output).Length / 1e6:F1} MB)");
        return 0;
    }
}
