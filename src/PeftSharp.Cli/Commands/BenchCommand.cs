using PeftSharp.Benchmarks;
using PeftSharp.Checkpoints;
using PeftSharp.Dense;

namespace PeftSharp.Cli.Commands;

/// <summary>The offline benchmark: every method on the mini-VTAB suite with the study's protocol, and a report.</summary>
public sealed class BenchCommand : ICommand
{
    public string Name => "bench";
    public string Summary => "tune every method on the mini-VTAB suite (study protocol) and write an HTML/Markdown report";
    public IEnumerable<string> Flags => new[] { "help", "quick", "full", "quiet", "queue" };
    public string Usage => $"""
        peftsharp bench [--profile quick|default|standard|full | --quick | --full] [--queue] [--seeds N] [--out DIR] [--checkpoint FILE]
                        [--methods a,b,...] [--tasks a,b,...] [--epochs N] [--update-readme README.md]
                        [--search grid|halving [--eta N] [--last-rung F]] [--precision fp32|bf16|auto]
                        [--device cpu|cuda] [--quiet]
        peftsharp bench --family video [--profile quick|default] [--methods a,b] [--tasks video-motion,video-appearance]
                        [--epochs N] [--out DIR] [--checkpoint FILE]
          The video family: the shipped backbone inflated to 4-frame clips, linear, full, LoRA, AdaptFormer, BitFit,
          prefix, ST-Adapter and BAPAT on the built-in motion and appearance tasks (lr chosen on val), the
          V-PETL-style table (DIR/video.md), the frame-shuffle control and test clips with predictions
          (DIR/video-clips.png). Default DIR ./peftsharp-video-report.
        peftsharp bench --family dense [--profile quick|default|full | --quick] [--methods a,b] [--tasks glyphs-seg,glyphs-det]
                        [--epochs N] [--out DIR] [--checkpoint FILE]
          The dense family (docs/dense.md): V-PETL's dense methods on the built-in segmentation (glyphs-seg by default,
          garments-seg; mIoU) and detection (glyphs-det by default, digits-det; COCO box AP) tasks, lr searched on val
          (profile full), the best retrained on train+val
          and scored on test; writes DIR/dense-report.html (with pictures), DIR/dense-summary.md and DIR/results.db.
          Default DIR ./peftsharp-dense-report.
          Materialises the suite (shipped data + rendered scenes) in DIR/suite, tunes each method on each task
          (search on train800, select on val200, retrain the choice on train800val200, test), adds a linear probe on
          a random-init backbone, and writes DIR/results.db, DIR/report.html and DIR/summary.md. Default DIR
          ./peftsharp-report; default backbone the shipped {ShippedModels.DefaultVitName} (next to the tool).
          Interrupted runs resume: finished runs are never redone.
          Profiles:
            quick    3 tasks, 4 methods, 2 lrs (and LoRA's rank), shrunken splits; about 2 minutes
            default  6 tasks (2 per group), the study's 16 methods, 2 lrs x 2 values of each capacity knob,
                     2 epochs on the first 160 of train800 / 40 of val200; within 15 minutes on 2 cores
            standard all 10 tasks, the study's 16 methods, whole train800/val200, lr 1e-3 and 1e-2 x each capacity
                     knob searched by successive halving, 20 epochs (2 warm-up), batch 64, the choice retrained with
                     2 seeds; hours (docs/bench.md)
            full     all 10 tasks and every image method, 100 epochs, lr x wd x the study's grids, whole splits
          --queue puts every run of the profile in DIR/results.db's sweep queue (plan bench-PROFILE) instead of
          training: start 'peftsharp worker --db DIR/results.db' processes (here or on other machines sharing the
          folder), then run the same bench command without --queue for the report (it finds the runs finished).
          The queue trains whole grids: queue the standard profile with --search grid.
          --search halving searches each cell by successive halving (see 'peftsharp tune --help') instead of
          training every grid point fully (the standard profile's default; --search grid trains the whole grid);
          the report's header says so.
          --precision auto times a float32 and a bfloat16 product of the backbone's shape on this CPU once (cached
          per machine), keeps the faster for every run and says which; each run's key records the precision used.
          --seeds N retrains each chosen configuration with N seeds (42, 43, ...); the report gives 95 % intervals
          and which methods differ significantly from the best (paired bootstrap over test images and seeds).
        """;

    public int Run(CommandLine line)
    {
        string family = line.Get("family") ?? "classification";
        if (family == "video") return RunVideo(line);
        if (family == "dense") return RunDense(line);
        if (family != "classification") throw new PeftSharpException("family", $"bench: unknown family '{family}' (classification, video, dense)");
        var profile = Profile(line);
        if (line.Get("methods") is string methods) profile = profile with { Methods = List(methods) };
        if (line.Get("tasks") is string tasks) profile = profile with { Tasks = List(tasks) };
        profile = (profile with { Epochs = line.Int("epochs", profile.Epochs), Seeds = line.Int("seeds", profile.Seeds), Halving = SharedOptions.Search(line, profile.Halving) }).Validate();
        string outDir = line.Get("out") ?? "peftsharp-report";
        string checkpoint = line.Get("checkpoint") ?? ShippedModels.RequireDefaultVit();
        // auto is decided once, for the backbone's shape at the profile's batch, and every run records the result.
        profile = profile with { Precision = SharedOptions.Precision(line, () => ModelCheckpoints.ReadVitConfig(checkpoint), profile.BatchSize) };
        string? readme = line.Get("update-readme");
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet"), queue = line.Flag("queue");
        line.RejectUnknown();

        if (queue)
        {
            var plan = new SuiteBenchmark(profile, outDir, checkpoint).Queue(new Progress<string>(s => Console.WriteLine(s)));
            Console.WriteLine($"plan {plan.Plan}: {plan.SweepIds.Count} cells, {plan.Queued} run(s) queued" + (plan.AlreadyQueued > 0 ? $", {plan.AlreadyQueued} already queued" : "") +
                              $" in {Path.Combine(outDir, "results.db")}; start workers with: peftsharp worker --db {Path.Combine(outDir, "results.db")}");
            return 0;
        }
        var outcome = ConsoleObserver.Run(quiet, observer =>
            new SuiteBenchmark(profile, outDir, checkpoint).Run(device, observer, new Progress<string>(s => Console.WriteLine(s))));
        var report = new BenchReport(outcome);
        report.Write(outDir);
        Console.WriteLine();
        Console.WriteLine(report.Markdown());
        Console.WriteLine($"report: {Path.Combine(outDir, "report.html")}; summary: {Path.Combine(outDir, "summary.md")}; database: {Path.Combine(outDir, "results.db")}");
        if (readme != null)
        {
            BenchReport.UpdateReadme(readme, report.Markdown());
            Console.WriteLine($"updated the results section of {readme}");
        }
        return outcome.Cells.All(c => c.TestTop1 != null) ? 0 : 1;
    }

    static int RunDense(CommandLine line)
    {
        var profile = DenseBenchProfile.Get(line.Flag("quick") ? "quick" : line.Get("profile") ?? "default");
        if (line.Get("methods") is string methods) profile = profile with { Methods = List(methods) };
        if (line.Get("tasks") is string tasks) profile = profile with { Tasks = List(tasks) };
        profile = (profile with { Epochs = line.Int("epochs", profile.Epochs) }).Validate();
        string outDir = line.Get("out") ?? "peftsharp-dense-report";
        string checkpoint = line.Get("checkpoint") ?? ShippedModels.RequireDefaultVit();
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();
        var outcome = ConsoleObserver.Run(quiet, observer =>
            new DenseBenchmark(profile, outDir, checkpoint).Run(device, observer, new Progress<string>(s => Console.WriteLine(s))));
        var report = new DenseReport(outcome);
        report.Write(outDir);
        Console.WriteLine();
        Console.WriteLine(report.Markdown());
        Console.WriteLine($"report: {Path.Combine(outDir, "dense-report.html")}; summary: {Path.Combine(outDir, "dense-summary.md")}; database: {Path.Combine(outDir, "results.db")}");
        return outcome.Cells.All(c => c.Test != null) ? 0 : 1;
    }

    /// <summary>The video family: the built-in motion and appearance tasks, the video methods, the V-PETL-style table.</summary>
    static int RunVideo(CommandLine line)
    {
        var profile = Video.VideoBenchProfile.Get(line.Get("profile") ?? (line.Flag("quick") ? "quick" : "default"));
        if (line.Get("methods") is string methods) profile = profile with { Methods = List(methods) };
        if (line.Get("tasks") is string tasks) profile = profile with { Tasks = List(tasks) };
        profile = profile with { Epochs = line.Int("epochs", profile.Epochs) };
        foreach (var m in profile.Methods) Tuners.TunerRegistry.Parse(m);
        foreach (var t in profile.Tasks)
            if (!Video.VideoTasks.Names.Contains(t)) throw new PeftSharpException("tasks", $"unknown video task '{t}' (known: {string.Join(", ", Video.VideoTasks.Names)})");
        string outDir = line.Get("out") ?? "peftsharp-video-report";
        string checkpoint = line.Get("checkpoint") ?? ShippedModels.RequireDefaultVit();
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var cells = ConsoleObserver.Run(quiet, observer =>
            new Video.VideoBenchmark(profile, outDir, checkpoint).Run(device, observer, new Progress<string>(s => Console.WriteLine(s))));
        Console.WriteLine();
        Console.WriteLine(Video.VideoBenchmark.Markdown(cells));
        Console.WriteLine($"table: {Path.Combine(outDir, "video.md")}; clips: {Path.Combine(outDir, "video-clips.png")}; database: {Path.Combine(outDir, "results.db")}; {watch.Elapsed.TotalMinutes:F1} min");
        return cells.Count == profile.Tasks.Count * profile.Methods.Count ? 0 : 1;
    }

    /// <summary>--profile NAME, or the --quick / --full shorthands (which exclude each other and a --profile).</summary>
    static BenchProfile Profile(CommandLine line)
    {
        bool quick = line.Flag("quick"), full = line.Flag("full");
        string? named = line.Get("profile");
        if ((quick ? 1 : 0) + (full ? 1 : 0) + (named != null ? 1 : 0) > 1)
            throw new PeftSharpException("bench: give one of --profile, --quick and --full");
        return BenchProfile.Get(named ?? (quick ? "quick" : full ? "full" : "default"));
    }

    static List<string> List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}
