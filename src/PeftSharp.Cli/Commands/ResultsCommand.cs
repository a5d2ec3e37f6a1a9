using System.Globalization;
using PeftSharp.Results;
using Spectre.Console;

namespace PeftSharp.Cli.Commands;

/// <summary>Lists, filters and exports the runs of a results database.</summary>
public sealed class ResultsCommand : ICommand
{
    public string Name => "results";
    public string Summary => "list, filter and export stored runs (table, csv, json)";
    public string Usage => """
        peftsharp results [--db FILE|URL] [--format table|csv|json] [--dataset NAME] [--method ID]
                          [--stage search|final|single] [--status running|finished|failed] [--sweep ID] [--best]
          --best lists, per dataset and method, the search run with the highest val200 top-1.
        """;
    public IEnumerable<string> Flags => new[] { "help", "best" };

    public int Run(CommandLine line)
    {
        string path = SharedOptions.Db(line);
        string format = line.Get("format") ?? "table";
        var filter = new RunFilter(line.Get("dataset"), line.Get("method"), Parse<RunStage>(line.Get("stage"), "stage"),
                                   Parse<RunStatus>(line.Get("status"), "status"), line.Get("sweep"));
        bool best = line.Flag("best");
        line.RejectUnknown();
        if (format is not ("table" or "csv" or "json")) throw new PeftSharpException($"results: --format must be table, csv or json (got '{format}')");
        if (!ResultsStores.IsPostgres(path) && !File.Exists(path)) throw new PeftSharpException($"{path}: no results database here (pass --db FILE|URL)");
        using var db = ResultsStores.Open(path);
        var runs = best ? db.BestSearchRuns(filter) : db.Runs(filter);
        switch (format)
        {
            case "csv": Console.Write(RunExport.ToCsv(runs)); break;
            case "json": Console.WriteLine(RunExport.ToJson(runs)); break;
            default: PrintTable(runs); break;
        }
        return 0;
    }

    static T? Parse<T>(string? text, string option) where T : struct, Enum =>
        text == null ? null
        : Enum.TryParse<T>(text, ignoreCase: true, out var v) ? v
        : throw new PeftSharpException($"results: --{option} must be one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))} (got '{text}')");

    static void PrintTable(IReadOnlyList<RunRecord> runs)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var c in new[] { "id", "dataset", "stage", "method", "lr", "wd", "seed", "split", "top-1 %", "params", "train s", "status" })
            table.AddColumn(c);
        foreach (var r in runs)
            table.AddRow(r.Id.ToString(CultureInfo.InvariantCulture), Markup.Escape(r.Spec.Dataset), r.Spec.Stage.ToString().ToLowerInvariant(),
                Markup.Escape(r.Spec.Method), r.Spec.Lr.ToString("G3", CultureInfo.InvariantCulture), r.Spec.WeightDecay.ToString("G3", CultureInfo.InvariantCulture),
                r.Spec.Seed.ToString(CultureInfo.InvariantCulture), Markup.Escape(r.Spec.EvalSplit),
                r.Top1 is double t ? (100 * t).ToString("F2", CultureInfo.InvariantCulture) : "-",
                r.Outcome?.TrainableParams.ToString("N0", CultureInfo.InvariantCulture) ?? "-",
                r.Outcome?.TrainSeconds.ToString("F1", CultureInfo.InvariantCulture) ?? "-",
                Markup.Escape(r.Status.ToString().ToLowerInvariant()));
        AnsiConsole.Write(table);
        Console.WriteLine($"{runs.Count} run(s)");
    }
}
