using PeftSharp.Training;

namespace PeftSharp.Cli.Commands;

/// <summary>The recipe of the shipped default backbone: glyph and wallpaper-picture classification.</summary>
public sealed class PretrainCommand : ICommand
{
    public string Name => "pretrain";
    public string Summary => "pretrain the default backbone on rendered glyphs and wallpaper crops (the shipped weights' recipe)";
    public string Usage => """
        peftsharp pretrain [--out models/peftsharp-vit-tiny6-p8-32.safetensors] [--steps 4000] [--batch-size 128]
                           [--lr 5e-4] [--seed 2026] [--font-dir /usr/share/fonts]
                           [--curriculum 0.6] [--start-classes 32] [--photo-fraction 0.25] [--photo-dir DIR ...]
          Trains a 6-block ViT-Tiny (32 px, 8-px patches) to classify glyphs rendered from every installed font
          (digits excluded); writes timm-keyed safetensors and a .card.json model card beside them. Over the first
          --curriculum fraction of the steps, the classes grow from --start-classes to all and the augmentation
          from none to full. --photo-fraction of every batch are crops of wallpaper pictures (one class each) from
          --photo-dir (default /usr/share/backgrounds/mate and /usr/share/wallpapers: apt-get install
          mate-backgrounds plasma-workspace-wallpapers), so that the model keeps colour and texture; 0 for glyphs alone.
          scripts/install-pretraining-sources.sh installs the fonts and pictures the shipped weights were trained on.
        """;

    public int Run(CommandLine line)
    {
        var d = new PretrainOptions();
        var options = d with
        {
            Steps = line.Int("steps", d.Steps), BatchSize = line.Int("batch-size", d.BatchSize), Lr = line.Double("lr", d.Lr),
            Seed = line.Int("seed", d.Seed), FontDir = line.Get("font-dir") ?? d.FontDir,
            CurriculumFraction = line.Double("curriculum", d.CurriculumFraction), StartClasses = line.Int("start-classes", d.StartClasses),
            PhotoFraction = line.Double("photo-fraction", d.PhotoFraction),
            PhotoDirs = line.GetAll("photo-dir") is { Count: > 0 } dirs ? dirs : d.PhotoDirs,
        };
        string output = line.Get("out") ?? "models/peftsharp-vit-tiny6-p8-32.safetensors";
        line.RejectUnknown();
        if (options.Steps < 1 || options.BatchSize < 1) throw new PeftSharpException("pretrain: --steps and --batch-size must be >= 1");
        if (options.CurriculumFraction is < 0 or > 1 || options.StartClasses < 1)
            throw new PeftSharpException("pretrain: --curriculum must be in [0, 1] and --start-classes >= 1");
        if (options.PhotoFraction is < 0 or >= 1) throw new PeftSharpException("pretrain: --photo-fraction must be in [0, 1)");
        var result = Pretraining.Run(options, new Progress<string>(s => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}")));
        Pretraining.Save(result, options, output, ("peftsharp pretrain " + string.Join(" ", Environment.GetCommandLineArgs().Skip(2))).Trim());
        Console.WriteLine($"wrote {output} (held-out glyph top-1 {result.HeldOutTop1:F2}%" +
                          (double.IsNaN(result.PhotoHeldOutTop1) ? "" : $", photo top-1 {result.PhotoHeldOutTop1:F2}%") + $", {result.Seconds / 60:F1} min)");
        return 0;
    }
}
