using PeftSharp.Benchmarks;

namespace PeftSharp.Cli.Commands;

/// <summary>The offline benchmark: every method on every mini-VTAB task with the study's protocol, and a report.</summary>
public sealed class BenchCommand : ICommand
{
    public const string DefaultCheckpoint = "models/peftsharp-vit-tiny6-p8-32.safetensors";

    public string Name => "bench";
    public string Summary => "run every method on the mini-VTAB suite (study protocol) and write an HTML/Markdown report";
    public IEnumerable<string> Flags => new[] { "help", "quick", "full", "quiet" };
    public string Usage => $"""
        peftsharp bench [--quick | --full] [--out DIR] [--checkpoint FILE] [--methods a,b,...] [--tasks a,b,...]
                        [--epochs N] [--update-readme README.md] [--device cpu|cuda] [--quiet]
          Materialises the suite (shipped data + rendered scenes) in DIR/suite, tunes each method on each task
          (val200 selection, retrain on train800val200, test), adds a linear probe on a random-init backbone,
          and writes DIR/results.db, DIR/report.html and DIR/summary.md. Default DIR ./peftsharp-report,
          default backbone {DefaultCheckpoint}. Interrupted runs resume: finished runs are never redone.
          Profiles: --quick (3 tasks, 4 methods, 2 epochs), default (all tasks and methods, 3 epochs, one lr per
          method, so no val200 search), --full (the study's 100 epochs, lr x wd x method grids, val200 selection).
        """;

    public int Run(CommandLine line)
    {
        bool quick = line.Flag("quick"), full = line.Flag("full");
        if (quick && full) throw new PeftSharpException("bench: --quick and --full exclude each other");
        var profile = quick ? BenchProfile.Quick : full ? BenchProfile.Full : BenchProfile.Default;
        if (line.Get("methods") is string methods) profile = profile with { Methods = List(methods) };
        if (line.Get("tasks") is string tasks) profile = profile with { Tasks = List(tasks) };
        profile = profile with { Epochs = line.Int("epochs", profile.Epochs) };
        foreach (var m in profile.Methods) Tuners.TunerRegistry.Parse(m);
        foreach (var t in profile.Tasks) Suite.MiniVtab.Task(t);
        if (profile.Epochs < 1) throw new PeftSharpException("bench: --epochs must be >= 1");
        string outDir = line.Get("out") ?? "peftsharp-report";
        string checkpoint = line.Get("checkpoint") ?? DefaultCheckpoint;
        string? readme = line.Get("update-readme");
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();

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

    static List<string> List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}
