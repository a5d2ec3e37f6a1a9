using PeftSharp.Training;

namespace PeftSharp.Cli.Commands;

/// <summary>The recipe of the shipped default backbone: glyph-classification pretraining.</summary>
public sealed class PretrainCommand : ICommand
{
    public string Name => "pretrain";
    public string Summary => "pretrain the default backbone on rendered glyphs (the shipped weights' recipe)";
    public string Usage => """
        peftsharp pretrain [--out models/peftsharp-vit-tiny6-p8-32.safetensors] [--steps 3000] [--batch-size 128]
                           [--lr 5e-4] [--seed 2026] [--font-dir /usr/share/fonts]
                           [--curriculum 0.6] [--start-classes 32]
          Trains a 6-block ViT-Tiny (32 px, 8-px patches) to classify glyphs rendered from every installed font
          (digits excluded); writes timm-keyed safetensors and a .card.json model card beside them. Over the first
          --curriculum fraction of the steps, the classes grow from --start-classes to all and the augmentation
          from none to full.
        """;

    public int Run(CommandLine line)
    {
        var d = new PretrainOptions();
        var options = d with
        {
            Steps = line.Int("steps", d.Steps), BatchSize = line.Int("batch-size", d.BatchSize), Lr = line.Double("lr", d.Lr),
            Seed = line.Int("seed", d.Seed), FontDir = line.Get("font-dir") ?? d.FontDir,
            CurriculumFraction = line.Double("curriculum", d.CurriculumFraction), StartClasses = line.Int("start-classes", d.StartClasses),
        };
        string output = line.Get("out") ?? "models/peftsharp-vit-tiny6-p8-32.safetensors";
        line.RejectUnknown();
        if (options.Steps < 1 || options.BatchSize < 1) throw new PeftSharpException("pretrain: --steps and --batch-size must be >= 1");
        if (options.CurriculumFraction is < 0 or > 1 || options.StartClasses < 1)
            throw new PeftSharpException("pretrain: --curriculum must be in [0, 1] and --start-classes >= 1");
        var result = Pretraining.Run(options, new Progress<string>(s => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}")));
        Pretraining.Save(result, options, output);
        Console.WriteLine($"wrote {output} (held-out glyph top-1 {result.HeldOutTop1:F2}%, {result.Seconds / 60:F1} min)");
        return 0;
    }
}
