using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PeftSharp.Results;

/// <summary>Runs as CSV (RFC 4180), JSON or a plain-text table. CSV and JSON carry every stored column.</summary>
public static class RunExport
{
    /// <summary>Text that is already JSON: embedded as a value in JSON output, written verbatim in CSV.</summary>
    readonly record struct JsonText(string Json);

    static readonly (string Name, Func<RunRecord, object?> Get)[] Columns =
    {
        ("id", r => r.Id),
        ("key", r => r.Key),
        ("stage", r => RunNames.Of(r.Spec.Stage)),
        ("dataset", r => r.Spec.Dataset),
        ("dataset_path", r => r.Context.DatasetPath),
        ("train_split", r => r.Spec.TrainSplit),
        ("eval_split", r => r.Spec.EvalSplit),
        ("method", r => r.Spec.Method),
        ("hyper", r => new JsonText(r.Spec.HyperJson)),
        ("lr", r => r.Spec.Lr),
        ("weight_decay", r => r.Spec.WeightDecay),
        ("seed", r => r.Spec.Seed),
        ("epochs", r => r.Spec.Epochs),
        ("batch_size", r => r.Spec.BatchSize),
        ("training", r => new JsonText(r.Spec.TrainingJson)),
        ("model", r => new JsonText(r.Spec.ModelJson)),
        ("checkpoint", r => r.Spec.Checkpoint),
        ("sweep_id", r => r.Spec.SweepId),
        ("status", r => RunNames.Of(r.Status)),
        ("trainable_params", r => r.Outcome?.TrainableParams),
        ("top1", r => r.Outcome?.Top1),
        ("metrics", r => r.Outcome is { } o ? new JsonText(o.MetricsJson) : null),
        ("train_seconds", r => r.Outcome?.TrainSeconds),
        ("eval_seconds", r => r.Outcome?.EvalSeconds),
        ("images_per_second", r => r.Outcome?.ImagesPerSecond),
        ("code_version", r => r.Context.CodeVersion),
        ("host", r => r.Context.Host),
        ("started_utc", r => r.StartedUtc),
        ("finished_utc", r => r.FinishedUtc),
        ("error", r => r.Error),
    };

    /// <summary>A header line and one line per run, CRLF line ends, fields quoted when they contain , " CR or LF.</summary>
    public static string ToCsv(IEnumerable<RunRecord> runs)
    {
        var sb = new StringBuilder();
        AppendCsvLine(sb, Columns.Select(c => c.Name));
        foreach (var run in runs) AppendCsvLine(sb, Columns.Select(c => Text(c.Get(run))));
        return sb.ToString();
    }

    /// <summary>A JSON array with one object per run; the JSON columns (hyper, training, model, metrics) are nested objects.</summary>
    public static string ToJson(IEnumerable<RunRecord> runs)
    {
        var array = new JsonArray();
        foreach (var run in runs)
        {
            var o = new JsonObject();
            foreach (var (name, get) in Columns) o[name] = Json(get(run));
            array.Add(o);
        }
        return array.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>An aligned plain-text table of the main columns (top-1 in percent), for terminals and logs.</summary>
    public static string ToTable(IEnumerable<RunRecord> runs)
    {
        string[] header = { "id", "stage", "dataset", "method", "hyper", "lr", "wd", "seed", "status", "top1 %", "params", "train s", "sweep" };
        var rows = runs.Select(r => new[]
        {
            Text(r.Id), RunNames.Of(r.Spec.Stage), r.Spec.Dataset, r.Spec.Method, r.Spec.HyperJson, Text(r.Spec.Lr),
            Text(r.Spec.WeightDecay), Text(r.Spec.Seed), RunNames.Of(r.Status),
            r.Top1 is { } t ? (t * 100).ToString("F2", CultureInfo.InvariantCulture) : "",
            Text(r.Outcome?.TrainableParams), r.Outcome is { } o ? o.TrainSeconds.ToString("F1", CultureInfo.InvariantCulture) : "",
            r.Spec.SweepId ?? "",
        }).ToList();
        bool[] rightAligned = { true, false, false, false, false, true, true, true, false, true, true, true, false };
        int[] widths = header.Select((h, i) => rows.Select(row => row[i].Length).Append(h.Length).Max()).ToArray();

        var sb = new StringBuilder();
        void Line(string[] cells) =>
            sb.Append(string.Join("  ", cells.Select((c, i) => rightAligned[i] ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd()).Append('\n');
        Line(header);
        Line(widths.Select(w => new string('-', w)).ToArray());
        foreach (var row in rows) Line(row);
        return sb.ToString();
    }

    static void AppendCsvLine(StringBuilder sb, IEnumerable<string> fields)
    {
        sb.AppendJoin(",", fields.Select(CsvField)).Append("\r\n");
    }

    static string CsvField(string field) =>
        field.IndexOfAny(new[] { ',', '"', '\r', '\n' }) < 0 ? field : "\"" + field.Replace("\"", "\"\"") + "\"";

    static string Text(object? value) => value switch
    {
        null => "",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        DateTime t => t.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
        JsonText j => j.Json,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    static JsonNode? Json(object? value) => value switch
    {
        null => null,
        JsonText j => JsonNode.Parse(j.Json),
        double d => JsonValue.Create(d),
        long l => JsonValue.Create(l),
        int i => JsonValue.Create(i),
        _ => JsonValue.Create(Text(value)),
    };
}
