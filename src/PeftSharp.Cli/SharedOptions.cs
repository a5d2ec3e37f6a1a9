using PeftSharp.Interop;
using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;

namespace PeftSharp.Cli;

/// <summary>The options train, eval and tune share: backbone, method, training settings, device, database.</summary>
public static class SharedOptions
{
    public const string Usage = """
          backbone:  --checkpoint FILE.safetensors [--model PRESET | --config JSON|FILE (timm kwargs)]; none of them:
                     the shipped pretrained backbone (a preset alone trains from random initialisation)
          method:    --method ID[+ID...] --set key=value ... (see 'peftsharp methods')
          training:  --epochs N (100) --batch-size N (64) --lr X (1e-3) --wd X (1e-4) --warmup N (epochs/10, at most 10)
                     --label-smoothing X (0) --drop-path X (0.1) --grad-clip X (off) --seed N (42)
                     --normalization none|imagenet|inception|clip (the checkpoint's, else none) --augment
                     --precision fp32|bf16|auto (fp32; bf16 = libtorch autocast, fast on CPUs with AVX-512 BF16 or AMX;
                     auto times both on this CPU for the model and keeps the faster, recorded in the run)
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
          --search halving (default grid): successive halving over the grid. Every configuration trains a short run
          (rung 1), the best 1/ETA by val top-1 at its last epoch (ties: lower lr, wd) train a run ETA times longer,
          until one is left; it is retrained as the grid's choice would be. --eta N (2) is the reduction factor,
          --last-rung F (0.25) the last rung's budget as a fraction of a full run's training images (epochs x
          images; below one epoch, one epoch over a prefix of the images). Rungs are stored as search runs (results
          shows 'search rung 1/2'); rerunning reuses finished rungs.
        """;

    public static IEnumerable<string> Flags => new[] { "help", "augment", "quiet", "no-feature-cache", "grad-checkpointing" };

    /// <summary>The backbone options; none at all means the shipped pretrained backbone. A preset without weights
    /// trains from random initialisation, which is said on stderr.</summary>
    public static BackboneSpec Backbone(CommandLine line)
    {
        var spec = BackboneSpec.OrShipped(line.Get("model"), line.Get("config"), line.Get("checkpoint"));
        if (spec.IsRandomInit)
            Console.Error.WriteLine($"peftsharp {line.Verb}: note: no --checkpoint, so every weight of {line.Get("model") ?? "the configured model"} starts from random initialisation (leave out --model/--config to use the shipped pretrained backbone)");
        return spec;
    }

    public const string SplitUsage = """
          data:      TASK_DIR is a folder with one sub-folder of images per class (split per class by a seeded hash:
                     --val-fraction X (0.1) --test-fraction X (0.2) --split-seed N (0); a file's split never changes
                     when files are added), or with train/, test/ (and val/) folders of those, or list files
                     (train.txt, test.txt, val.txt; or VTAB-1K's train800.txt, val200.txt, train800val200.txt, test.txt)
        """;

    /// <summary>The split rule of a class-per-folder tree (--val-fraction, --test-fraction, --split-seed).</summary>
    public static Data.SplitRule SplitRule(CommandLine line)
    {
        var d = new Data.SplitRule();
        return new Data.SplitRule(line.Double("val-fraction", d.ValFraction), line.Double("test-fraction", d.TestFraction), line.Int("split-seed", d.Seed)).Validate();
    }

    /// <summary>Opens --data in whichever layout it has.</summary>
    public static Data.ImageTask Task(CommandLine line) => Data.ImageTask.Open(line.Require("data"), SplitRule(line));

    public static TrainOptions Train(CommandLine line, BackboneSpec backbone)
    {
        var d = new TrainOptions();
        int epochs = line.Int("epochs", d.Epochs), batchSize = line.Int("batch-size", d.BatchSize);
        // The library clamps warm-up to the run's length; a user who asks for more warm-up than epochs has a typo.
        if (line.Get("warmup") != null && line.Int("warmup", 0) is int warmup && warmup > 0 && warmup >= epochs)
            throw new PeftSharpException($"{line.Verb}: --warmup {warmup} must be below --epochs {epochs} (warm-up epochs are part of the run)");
        return new TrainOptions
        {
            Epochs = epochs, BatchSize = batchSize, Lr = line.Double("lr", d.Lr),
            WeightDecay = line.Double("wd", d.WeightDecay),
            LabelSmoothing = line.Double("label-smoothing", d.LabelSmoothing), DropPath = line.Double("drop-path", d.DropPath),
            GradClip = line.OptionalDouble("grad-clip"), Seed = line.Int("seed", d.Seed),
            // A short run gets a tenth of its epochs of warm-up unless told otherwise (ten epochs of a hundred, as the study).
            WarmupEpochs = line.Get("warmup") != null ? line.Int("warmup", d.WarmupEpochs) : Math.Min(d.WarmupEpochs, epochs / 10),
            Normalization = Data.Normalization.FromName(line.Get("normalization") ?? CheckpointNormalization(backbone) ?? d.Normalization).Name,
            Augment = line.Flag("augment"), CacheFrozenFeatures = !line.Flag("no-feature-cache"),
            Precision = Precision(line, backbone.Config, batchSize), GradCheckpointing = line.Flag("grad-checkpointing"),
        }.Validate();
    }

    /// <summary>--precision fp32|bf16|auto; auto times both on this CPU for the model's shapes (cached per machine),
    /// says which it chose and why on stderr, and returns it (so the run records the precision actually used).</summary>
    /// <param name="config">Read only for auto (a checkpoint's header need not be read otherwise).</param>
    public static Precision Precision(CommandLine line, Func<Models.VitConfig> config, int batchSize)
    {
        string? name = line.Get("precision");
        if (!string.Equals(name?.Trim(), "auto", StringComparison.OrdinalIgnoreCase))
        {
            try { return Autocast.ParsePrecision(name); }
            catch (PeftSharpException) { throw new PeftSharpException($"{line.Verb}: --precision must be fp32, bf16 or auto (got '{name}')"); }
        }
        // stderr: stdout may carry a JSON report.
        var choice = PrecisionProbe.Choose(config(), batchSize, Devices.Parse(line.Get("device")));
        Console.Error.WriteLine($"peftsharp {line.Verb}: {choice}");
        return choice.Precision;
    }

    /// <summary>The normalisation a --checkpoint records in its metadata (as the shipped backbone does), if any.</summary>
    static string? CheckpointNormalization(BackboneSpec backbone) =>
        backbone.Checkpoint is string path && File.Exists(path) ? Checkpoints.ModelCheckpoints.ReadNormalization(path) : null;

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
        var backbone = Backbone(line);
        return new TuneSpec
        {
            TaskDirectory = data, Backbone = backbone, Method = method, Settings = settings, SplitRule = SplitRule(line),
            MethodGrid = Grid(line.GetAll("grid"), method, settings),
            Lrs = line.Doubles("lrs", [1e-3, 1e-2]),
            WeightDecays = line.Doubles("wds", [1e-4, 1e-3]),
            Train = Train(line, backbone), Halving = Search(line),
            Seeds = line.Get("seeds") is string seeds ? seeds.Split(',').Select(s => int.TryParse(s, out int v) ? v : throw new PeftSharpException($"{line.Verb}: --seeds expects integers, got '{s}'")).ToArray() : new[] { line.Int("seed", 42) },
        };
    }

    /// <summary>--search grid|halving with --eta and --last-rung: the halving search, or null for the whole grid.</summary>
    public static HalvingSearch? Search(CommandLine line, HalvingSearch? fallback = null)
    {
        string? search = line.Get("search");
        bool tuned = line.Get("eta") != null || line.Get("last-rung") != null;
        switch (search)
        {
            case null when !tuned: return fallback;
            case "grid" when !tuned: return null;
            case "grid": throw new PeftSharpException($"{line.Verb}: --eta and --last-rung tune --search halving, not a grid search");
            case null or "halving":
                var d = fallback ?? new HalvingSearch();
                return new HalvingSearch(line.Int("eta", d.Eta), line.Double("last-rung", d.TopFraction)).Validate();
            default: throw new PeftSharpException($"{line.Verb}: --search must be grid or halving (got '{search}')");
        }
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
