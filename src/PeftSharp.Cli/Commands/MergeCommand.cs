using PeftSharp.Inference;

namespace PeftSharp.Cli.Commands;

/// <summary>Folds an adapter into its base and writes a plain checkpoint that carries class names and preprocessing.</summary>
public sealed class MergeCommand : ICommand
{
    public string Name => "merge";
    public string Summary => "fold an adapter into its base: a plain timm-keyed checkpoint with class names and preprocessing";
    public IEnumerable<string> Flags => new[] { "help", "force-base" };
    public string Usage => """
        peftsharp merge --adapter DIR --out FILE.safetensors [--checkpoint BASE] [--force-base]
          Writes the base with the adapter folded into its weights, under timm's key names (it loads in timm as a
          plain state dict), with the preprocessing and class names in its metadata, so eval and predict need
          nothing else. Methods that are not linear on the frozen path (VPT, adapters with a non-linearity, …)
          cannot be merged and are refused.
        """;

    public int Run(CommandLine line)
    {
        var source = EvalCommand.ClassifierOptions(line) with { Adapter = line.Require("adapter") };
        string output = line.Require("out");
        line.RejectUnknown();
        if (!output.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new PeftSharpException($"merge: --out {output}: expected a .safetensors file name");
        string? folder = Path.GetDirectoryName(Path.GetFullPath(output));
        if (folder != null) WritableFolder.Require(folder, "the merged checkpoint");

        using var classifier = Classifier.Load(source);
        classifier.MergeAndUnload();
        classifier.SaveMerged(output);
        Console.WriteLine($"{output}: {classifier.Method} merged into {Path.GetFileName(classifier.Checkpoint)} ({classifier.NumClasses} classes, {classifier.Preprocessing})");
        return 0;
    }
}
