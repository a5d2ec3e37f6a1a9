using PeftSharp.Training;

namespace PeftSharp.Cli.Commands;

/// <summary>The recipe of the shipped default backbone: glyph-classification pretraining.</summary>
public sealed class PretrainCommand : ICommand
{
    public string Name => "pretrain";
    public string Summary => "pretrain the default backbone on rendered glyphs (the shipped weights' recipe)";
    public string Usage => """
        peftsharp pretrain [--out models/peftsharp-vit-tiny6-p8-32.safetensors] [--steps 3000] [--batch-size 128]
                           [--lr 1e-3] [--seed 2026] [--font-dir /usr/share/fonts]
          Trains a 6-block ViT-Tiny (32 px, 8-px patches) to classify glyphs rendered from every installed font
          (digits excluded); writes timm-keyed safetensors and a .card.json model card beside them.
        """;

    public int Run(CommandLine line)
    {
        var d = new PretrainOptions();
        var options = d with
        {
            Steps = line.Int("steps", d.Steps), BatchSize = line.Int("batch-size", d.BatchSize), Lr = line.Double("lr", d.Lr),
            Seed = line.Int("seed", d.Seed), FontDir = line.Get("font-dir") ?? d.FontDir,
        };
        string output = line.Get("out") ?? "models/peftsharp-vit-tiny6-p8-32.safetensors";
        line.RejectUnknown();
        if (options.Steps < 1 || options.BatchSize < 1) throw new PeftSharpException("pretrain: --steps and --batch-size must be >= 1");
        var result = Pretraining.Run(options, new Progress<string>(s => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}")));
        Pretraining.Save(result, options, output);
        Console.WriteLine($"wrote {output} (held-out glyph top-1 {result.HeldOutTop1:F2}%, {result.Seconds / 60:F1} min)");
        return 0;
    }
}
