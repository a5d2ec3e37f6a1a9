using PeftSharp.Export;
using PeftSharp.Inference;

namespace PeftSharp.Cli.Commands;

/// <summary>Writes a trained ViT (merged with its adapter) as an ONNX model for ONNX Runtime.</summary>
public sealed class ExportCommand : ICommand
{
    public string Name => "export";
    public string Summary => "export a model (merged with its adapter) to ONNX for ONNX Runtime: opset 17, dynamic batch";
    public IEnumerable<string> Flags => new[] { "help", "force-base" };
    public string Usage => $"""
        peftsharp export --onnx OUT.onnx [--checkpoint FILE] [--adapter DIR] [--force-base]
          Folds the adapter into the weights (mergeable methods; the others are refused) and writes the ViT as ONNX:
          input '{OnnxExport.InputName}' [batch, 3, S, S] preprocessed as the model records, output '{OnnxExport.OutputName}'
          [batch, classes]. The preprocessing and class names go into the model's metadata ('{Data.Preprocessing.MetadataKey}',
          '{Classifier.ClassNamesKey}').
        """;

    public int Run(CommandLine line)
    {
        var source = EvalCommand.ClassifierOptions(line);
        string output = line.Require("onnx");
        line.RejectUnknown();
        if (!output.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
            throw new PeftSharpException($"export: --onnx {output}: expected a .onnx file name");
        WritableFolder.Require(Path.GetDirectoryName(Path.GetFullPath(output))!, "the ONNX model");

        using var classifier = Classifier.Load(source);
        classifier.MergeAndUnload();
        OnnxExport.Save(classifier.Model, output, classifier.Metadata());
        Console.WriteLine($"{output}: {classifier.Method} on {Path.GetFileName(classifier.Checkpoint)} as ONNX opset {OnnxExport.Opset} ({classifier.NumClasses} classes, {classifier.Preprocessing}; {new FileInfo(output).Length / 1e6:F1} MB)");
        return 0;
    }
}
