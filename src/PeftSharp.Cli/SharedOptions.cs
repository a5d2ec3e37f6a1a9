using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;

namespace PeftSharp.Cli;

/// <summary>The options train, eval and tune share: backbone, method, training settings, device, database.</summary>
public static class SharedOptions
{
    public const string Usage = """
          backbone:  --model PRESET | --config JSON|FILE (timm kwargs) | --checkpoint FILE.safetensors
          method:    --method ID[+ID...] --set key=value ... (see 'peftsharp methods')
          training:  --epochs N (100) --batch-size N (64) --lr X (1e-3) --wd X (1e-4) --warmup N (10)
                     --label-smoothing X (0) --drop-path X (0.1) --grad-clip X (off) --seed N (42)
                     --normalization none|imagenet|inception|clip (the checkpoint's, else none) --augment
          other:     --device cpu|cuda (cpu) --db FILE (results.db) --quiet
        """;

    public static IEnumerable<string> Flags => new[] { "help", "augment", "quiet", "no-feature-cache" };

    public static BackboneSpec Backbone(CommandLine line) => new(line.Get("model"), line.Get("config"), line.Get("checkpoint"));

    public static TrainOptions Train(CommandLine line)
    {
        var d = new TrainOptions();
        return new TrainOptions
        {
            Epochs = line.Int("epochs", d.Epochs), BatchSize = line.Int("batch-size", d.BatchSize), Lr = line.Double("lr", d.Lr),
            WeightDecay = line.Double("wd", d.WeightDecay), WarmupEpochs = line.Int("warmup", d.WarmupEpochs),
            LabelSmoothing = line.Double("label-smoothing", d.LabelSmoothing), DropPath = line.Double("drop-path", d.DropPath),
            GradClip = line.OptionalDouble("grad-clip"), Seed = line.Int("seed", d.Seed),
            Normalization = Data.Normalization.FromName(line.Get("normalization") ?? CheckpointNormalization(line) ?? d.Normalization).Name,
            Augment = line.Flag("augment"), CacheFrozenFeatures = !line.Flag("no-feature-cache"),
        }.Validate();
    }

    /// <summary>The normalisation a --checkpoint records in its metadata (as the shipped backbone does), if any.</summary>
    static string? CheckpointNormalization(CommandLine line) =>
        line.Get("checkpoint") is string path && File.Exists(path) ? Checkpoints.ModelCheckpoints.ReadNormalization(path) : null;

    public static Dictionary<string, string> Settings(CommandLine line) => TunerRegistry.ParseSettings(line.GetAll("set"));

    public static string Db(CommandLine line) => line.Get("db") ?? ResultsDb.DefaultFileName;
}
