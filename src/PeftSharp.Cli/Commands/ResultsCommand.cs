using System.Globalization;
using PeftSharp.Results;

namespace PeftSharp.Cli.Commands;

/// <summary>Lists, filters and exports the runs of a results database, and exports a run's stored adapter.</summary>
public sealed class ResultsCommand : ICommand
{
    public string Name => "results";
    public string Summary => "list, filter and export stored runs (table, csv, json); export a run's adapter";
    public string Usage => $"""
        peftsharp results [--db FILE|URL] [--format table|csv|json] [--columns a,b,c] [--dataset NAME] [--method ID]
                          [--stage search|final|single] [--status running|finished|failed] [--sweep ID] [--family F] [--best]
        peftsharp results export RUN_ID --adapter DIR [--db FILE|URL]
          --best lists, per dataset and method, the search run with the highest val200 top-1.
          The table is plain aligned text, one line per run however wide (pipe it to a file or 'less -S').
          --columns picks the table's columns, in order (default {string.Join(",", RunExport.DefaultTableColumns)}):
        {string.Join("\n", RunExport.TableColumnNames.Select(c => $"    {c.Name,-8} {c.Description}"))}
          Stage 'eval' marks runs that trained nothing (eval, zero-shot: train split 'none').
          export writes the adapter a finished run stored (train/tune keep them unless --keep-weights none)
          into DIR (adapter_config.json, adapter_model.safetensors), for eval --adapter or the library.
        """;
    public IEnumerable<string> Flags => new[] { "help", "best" };

    public int Run(CommandLine line)
    {
        if (line.Positional is ["export", ..]) return Export(line);
        string path = SharedOptions.Db(line);
        string format = line.Get("format") ?? "table";
        var columns = line.Get("columns")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var filter = new RunFilter(line.Get("dataset"), line.Get("method"), Parse<RunStage>(line.Get("stage"), "stage"),
                                   Parse<RunStatus>(line.Get("status"), "status"), line.Get("sweep"), line.Get("family"));
        bool best = line.Flag("best");
        line.RejectUnknown();
        if (format is not ("table" or "csv" or "json")) throw new PeftSharpException($"results: --format must be table, csv or json (got '{format}')");
        if (columns != null && format != "table") throw new PeftSharpException("results: --columns chooses the table's columns; csv and json carry every column");
        if (columns is { Length: 0 }) throw new PeftSharpException("results: --columns names no column, expected e.g. --columns id,method,hyper,top1");
        if (columns != null) _ = RunExport.ToTable([], columns);   // an unknown column fails before the database opens
        using var db = OpenExisting(path);
        var runs = best ? db.BestSearchRuns(filter) : db.Runs(filter);
        switch (format)
        {
            case "csv": Console.Write(RunExport.ToCsv(runs)); break;
            case "json": Console.WriteLine(RunExport.ToJson(runs)); break;
            default:
                Console.Write(RunExport.ToTable(runs, columns));
                Console.WriteLine($"{runs.Count} run(s)");
                break;
        }
        return 0;
    }

    /// <summary>results export RUN_ID --adapter DIR: the run's stored adapter into a folder, with its size.</summary>
    static int Export(CommandLine line)
    {
        string path = SharedOptions.Db(line);
        string? directory = line.Get("adapter");
        line.RejectUnknown(maxPositional: 2);
        if (line.Positional.Count < 2 || !long.TryParse(line.Positional[1], NumberStyles.None, CultureInfo.InvariantCulture, out long id))
            throw new PeftSharpException("results export: expected a run id (see 'peftsharp results'), e.g. results export 12 --adapter DIR");
        if (directory == null) throw new PeftSharpException("results export: expected --adapter DIR, the folder to write the adapter to");
        using var db = OpenExisting(path);
        var run = db.TryGetRun(id) ?? throw new PeftSharpException($"{db.Location}: no run {id} (see 'peftsharp results')");
        if (run.Status != RunStatus.Finished)
            throw new PeftSharpException($"{db.Location}: run {id} is {run.Status.ToString().ToLowerInvariant()}, not finished; only a finished run has weights to export");
        var info = db.FindArtifact(id, RunArtifacts.Adapter)
                   ?? throw new PeftSharpException($"{db.Location}: run {id} ({run.Spec.Method}) has no stored weights (trained with --keep-weights none, full fine-tuning without --keep-weights all, or before weights were kept)");
        RunArtifacts.ExportAdapter(db, id, directory);
        Console.WriteLine($"run {id}: adapter ({run.Spec.Method}, {Size(info.Bytes)}, sha256 {info.Sha256[..12]}) written to {directory}");
        return 0;
    }

    static SqlResultsStore OpenExisting(string path)
    {
        if (!ResultsStores.IsPostgres(path) && !File.Exists(path)) throw new PeftSharpException($"{path}: no results database here (pass --db FILE|URL)");
        return ResultsStores.Open(path);
    }

    static string Size(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => (bytes / 1024.0).ToString("F1", CultureInfo.InvariantCulture) + " KiB",
        _ => (bytes / (1024.0 * 1024)).ToString("F1", CultureInfo.InvariantCulture) + " MiB",
    };

    static T? Parse<T>(string? text, string option) where T : struct, Enum =>
        text == null ? null
        : Enum.TryParse<T>(text, ignoreCase: true, out var v) ? v
        : throw new PeftSharpException($"results: --{option} must be one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))} (got '{text}')");
}
