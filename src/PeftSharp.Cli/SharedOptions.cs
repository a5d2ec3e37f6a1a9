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
                     --precision fp32|bf16 (fp32; bf16 = libtorch autocast, fast on CPUs with AVX-512 BF16 or AMX)
                     --grad-checkpointing (recompute each block in the backward: less memory, more time)
          other:     --device cpu|cuda (cpu) --db FILE|URL (results.db, or $PEFTSHARP_DB) --quiet
                     --keep-weights none|adapters|all (adapters: each finished run keeps its adapter in the
                     database, full fine-tuning's weights only with all; see 'peftsharp results export')
          --db names a SQLite file, or a PostgreSQL database: postgres://user:pass@host:port/db or an Npgsql
          connection string (Host=...;Username=...;Database=...).
        """;

    /// <summary>The options tune and sweep plan take for their grid, beside the backbone and training options.</summary>
    public const string GridUsage = """
          --grid study (default) searches the method's grid from the study; --grid none uses defaults/--set;
          repeated --grid key=v1,v2 give an explicit grid. --lrs (1e-3,1e-2) and --wds (1e-4,1e-3) are the lr and
          weight-decay grids; --seeds 42,43,... retrains the chosen configuration once per seed.
        """;

    public static IEnumerable<string> Flags => new[] { "help", "augment", "quiet", "no-feature-cache", "grad-checkpointing" };

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
            Precision = Autocast.ParsePrecision(line.Get("precision")), GradCheckpointing = line.Flag("grad-checkpointing"),
        }.Validate();
    }

    /// <summary>The normalisation a --checkpoint records in its metadata (as the shipped backbone does), if any.</summary>
    static string? CheckpointNormalization(CommandLine line) =>
        line.Get("checkpoint") is string path && File.Exists(path) ? Checkpoints.ModelCheckpoints.ReadNormalization(path) : null;

    /// <summary>--keep-weights: which finished runs keep their trained weights in the results store.</summary>
    public static KeepWeights KeepWeights(CommandLine line) => line.Get("keep-weights") switch
    {
        null or "adapters" => Results.KeepWeights.Adapters,
        "none" => Results.KeepWeights.None,
        "all" => Results.KeepWeights.All,
        var other => throw new PeftSharpException($"{line.Verb}: --keep-weights must be none, adapters or all (got '{other}')"),
    };

    public static Dictionary<string, string> Settings(CommandLine line) => TunerRegistry.ParseSettings(line.GetAll("set"));

    /// <summary>The --db argument: a SQLite path or a PostgreSQL URL; PEFTSHARP_DB when not given (so a URL with a
    /// password need not be on the command line), else results.db.</summary>
    public static string Db(CommandLine line) =>
        line.Get("db") ?? NonEmpty(Environment.GetEnvironmentVariable(DbVariable)) ?? ResultsDb.DefaultFileName;

    public const string DbVariable = Sweeps.SlurmJob.DbVariable;

    static string? NonEmpty(string? text) => string.IsNullOrWhiteSpace(text) ? null : text;

    /// <summary>Opens the store --db names (SQLite or PostgreSQL).</summary>
    public static SqlResultsStore OpenDb(CommandLine line) => ResultsStores.Open(Db(line));

    /// <summary>The tune request of one task and method from the grid, backbone and training options.</summary>
    public static TuneSpec Tune(CommandLine line, string data, string method)
    {
        var settings = Settings(line);
        return new TuneSpec
        {
            TaskDirectory = data, Backbone = Backbone(line), Method = method, Settings = settings,
            MethodGrid = Grid(line.GetAll("grid"), method, settings),
            Lrs = line.Doubles("lrs", [1e-3, 1e-2]),
            WeightDecays = line.Doubles("wds", [1e-4, 1e-3]),
            Train = Train(line),
            Seeds = line.Get("seeds") is string seeds ? seeds.Split(',').Select(s => int.TryParse(s, out int v) ? v : throw new PeftSharpException($"{line.Verb}: --seeds expects integers, got '{s}'")).ToArray() : new[] { line.Int("seed", 42) },
        };
    }

    static Dictionary<string, string[]> Grid(IReadOnlyList<string> grids, string method, IReadOnlyDictionary<string, string> settings)
    {
        if (grids.Count == 0 || grids is ["study"]) return TuneSpec.StudyGrid(method, settings);
        if (grids is ["none"]) return new Dictionary<string, string[]>();
        var grid = new Dictionary<string, string[]>();
        foreach (var g in grids)
        {
            int eq = g.IndexOf('=');
            if (eq <= 0) throw new PeftSharpException($"--grid '{g}': expected study, none or key=v1,v2,...");
            grid[g[..eq]] = g[(eq + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        return grid;
    }
}
