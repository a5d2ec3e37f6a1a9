using PeftSharp.Checkpoints;
using PeftSharp.Studies;

namespace PeftSharp.Cli.Commands;

/// <summary>The unifying study's analyses after the ranking (ensembles, robustness, capacity, many-shot), over the results database.</summary>
public sealed class StudyCommand : ICommand
{
    public string Name => "study";
    public string Summary => "the unifying study's analyses (" + string.Join(", ", StudyCatalog.All.Select(s => s.Name)) + "): HTML + JSON report";
    public IEnumerable<string> Flags => new[] { "help", "quick", "full", "json", "no-train", "quiet" };
    public string Usage => $"""
        peftsharp study NAME [--quick | --full] [--out DIR] [--db FILE] [--checkpoint FILE] [--no-train] [--json]
                        [--tasks a,b,...] [--methods a,b,...] [--epochs N] [--sizes n,m,...] [--data DIR]
                        [--precision fp32|bf16|auto] [--device cpu|cuda] [--quiet]
          NAME is one of:
        {string.Join("\n", StudyCatalog.All.Select(s => $"    {s.Name,-11} {s.Summary}"))}
          Reads the runs a study needs from the results database (default DIR/results.db) and trains only the
          missing ones (a killed study resumes; finished runs are never redone); --no-train only reads, and a
          missing run is an error. Writes DIR/NAME.html and DIR/NAME.json (default DIR ./peftsharp-studies) and
          prints a short table, or the JSON with --json. The runs are the benchmark's own requests, so
          --db peftsharp-report/results.db reuses a finished 'bench' of the same profile.
          Profiles: --quick (smoke test, a few minutes), default, --full (the study's settings); --tasks,
          --methods and --epochs narrow a profile (capacity: --methods keeps the knobs it names; many-shot:
          --sizes replaces its training-set sizes, --data DIR is the folder of the Fashion-MNIST IDX files,
          default /usr/share/datasets/fashion-mnist from the Debian package dataset-fashion-mnist).
        """;

    public int Run(CommandLine line)
    {
        if (line.Positional.Count == 0) throw new PeftSharpException($"name a study ({string.Join(", ", StudyCatalog.All.Select(s => s.Name))})");
        var study = StudyCatalog.Get(line.Positional[0]);
        bool quick = line.Flag("quick"), full = line.Flag("full"), json = line.Flag("json"), quiet = line.Flag("quiet") || json;
        if (quick && full) throw new PeftSharpException("study: give one of --quick and --full");
        string profile = quick ? "quick" : full ? "full" : "default";
        var options = new StudyOptions
        {
            OutDir = line.Get("out") ?? "peftsharp-studies", DbPath = line.Get("db"),
            Checkpoint = line.Get("checkpoint") ?? study.DefaultCheckpoint(), TrainMissing = !line.Flag("no-train"),
            DataDir = line.Get("data"),
        };
        // auto is decided once (the backbone's shape at the profile's batch) and recorded in every run's key.
        options = options with { Precision = SharedOptions.Precision(line, () => ModelCheckpoints.ReadImageTowerConfig(options.Checkpoint), Benchmarks.BenchProfile.Get(profile).BatchSize) };
        var overrides = new StudyOverrides(List(line.Get("tasks")), List(line.Get("methods")), line.Get("epochs") is null ? null : line.Int("epochs", 0),
                                           List(line.Get("sizes"))?.Select(n => Size(n)).ToList());
        var device = Devices.Parse(line.Get("device"));
        line.RejectUnknown(maxPositional: 1);

        var output = ConsoleObserver.Run(quiet, observer =>
        {
            // With --json stdout carries the JSON document alone, so run progress is not shown.
            using var context = new StudyContext(options, device, json ? null : observer,
                                                 message => (json ? Console.Error : Console.Out).WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}"));
            return study.Run(context, profile, overrides);
        });
        var (html, file) = output.Write(options.OutDir);
        if (json)
        {
            Console.WriteLine(File.ReadAllText(file));
            return 0;
        }
        Console.WriteLine();
        Console.WriteLine(output.Summary);
        Console.WriteLine($"report: {html}; data: {file}; database: {options.DatabasePath}");
        return 0;
    }

    static int Size(string text) =>
        int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n > 0 ? n
            : throw new PeftSharpException($"study: --sizes expects positive whole numbers, got '{text}'");

    static List<string>? List(string? text) => text?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}
