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
        ("family", r => r.Spec.Family),
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

    /// <summary>A column of the text table: the name to ask for it by, how a run shows in it, and whether it is a
    /// number (right-aligned). Each column has one number format, so a column never mixes 0.000114 and 3.93E-05.</summary>
    sealed record TableColumn(string Name, string Header, Func<RunRecord, string> Cell, bool Number, string Description);

    static readonly TableColumn[] TableColumns =
    {
        new("id", "id", r => Text(r.Id), true, "run id"),
        new("dataset", "dataset", r => r.Spec.Dataset, false, "task name"),
        new("stage", "stage", StageOf, false, "search (with its rung under successive halving: search rung 1/2), final, single, or eval (an evaluation that trained nothing)"),
        new("method", "method", r => r.Spec.Method, false, "method spec"),
        new("hyper", "hyper", r => CompactHypers(r.Spec.HyperJson), false, "the method's hyperparameters (rank=8 alpha=8)"),
        new("lr", "lr", r => Scientific(r.Spec.Lr), true, "learning rate"),
        new("wd", "wd", r => Scientific(r.Spec.WeightDecay), true, "weight decay"),
        new("seed", "seed", r => Text(r.Spec.Seed), true, "seed"),
        new("epochs", "epochs", r => Text(r.Spec.Epochs), true, "epochs trained"),
        new("train", "train", r => r.Spec.TrainSplit, false, "training split (none: evaluation only)"),
        new("split", "split", r => r.Spec.EvalSplit, false, "evaluation split"),
        new("top1", "top1 %", r => r.Top1 is { } t ? (t * 100).ToString("F2", CultureInfo.InvariantCulture) : "", true, "top-1 accuracy in percent"),
        new("params", "params", r => r.Outcome?.TrainableParams.ToString("N0", CultureInfo.InvariantCulture) ?? "", true, "trainable parameters"),
        new("train_s", "train s", r => r.Outcome?.TrainSeconds.ToString("F1", CultureInfo.InvariantCulture) ?? "", true, "training seconds"),
        new("eval_s", "eval s", r => r.Outcome?.EvalSeconds.ToString("F1", CultureInfo.InvariantCulture) ?? "", true, "evaluation seconds"),
        new("img_s", "img/s", r => r.Outcome?.ImagesPerSecond.ToString("F0", CultureInfo.InvariantCulture) ?? "", true, "training images per second"),
        new("status", "status", r => RunNames.Of(r.Status), false, "running, finished or failed"),
        new("sweep", "sweep", r => r.Spec.SweepId ?? "", false, "sweep id"),
        new("family", "family", r => r.Spec.Family, false, "task family: classification, dense-seg, dense-det, video (top1 holds its metric)"),
        new("key", "key", r => r.Key[..12], false, "run key (first 12 hex digits)"),
        new("started", "started (UTC)", r => Text(r.StartedUtc), false, "start time"),
        new("host", "host", r => r.Context.Host, false, "host that ran it"),
        new("error", "error", r => r.Error ?? "", false, "why it failed"),
    };

    /// <summary>The columns of <see cref="ToTable(IEnumerable{RunRecord}, IReadOnlyList{string}?)"/> without a choice.</summary>
    public static readonly IReadOnlyList<string> DefaultTableColumns =
        new[] { "id", "dataset", "stage", "method", "hyper", "lr", "wd", "seed", "split", "top1", "params", "train_s", "status", "sweep" };

    /// <summary>Every column the text table can show, with what it holds (for help texts).</summary>
    public static IReadOnlyList<(string Name, string Description)> TableColumnNames => TableColumns.Select(c => (c.Name, c.Description)).ToList();

    /// <summary>
    /// An aligned plain-text table (no borders, no wrapping: one line per run however wide, so it reads the same in
    /// a terminal, a pipe or a file). <paramref name="columns"/> picks and orders the columns by name (default:
    /// <see cref="DefaultTableColumns"/>).
    /// </summary>
    public static string ToTable(IEnumerable<RunRecord> runs, IReadOnlyList<string>? columns = null)
    {
        var chosen = (columns ?? DefaultTableColumns).Select(ColumnNamed).ToArray();
        var rows = runs.Select(r => chosen.Select(c => OneLine(c.Cell(r))).ToArray()).ToList();
        int[] widths = chosen.Select((c, i) => rows.Select(row => row[i].Length).Append(c.Header.Length).Max()).ToArray();

        var sb = new StringBuilder();
        void Line(string[] cells) =>
            sb.Append(string.Join("  ", cells.Select((c, i) => chosen[i].Number ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd()).Append('\n');
        Line(chosen.Select(c => c.Header).ToArray());
        Line(widths.Select(w => new string('-', w)).ToArray());
        foreach (var row in rows) Line(row);
        return sb.ToString();
    }

    static TableColumn ColumnNamed(string name) =>
        TableColumns.FirstOrDefault(c => c.Name == name.Trim().ToLowerInvariant())
        ?? throw new PeftSharpException($"results table: unknown column '{name}', expected one of {string.Join(", ", TableColumns.Select(c => c.Name))}");

    /// <summary>"eval" for a run that trained nothing (its train split is "none": eval, zero-shot), else its stage.
    /// Shown, not stored: the stored stage stays what the run key was made of.</summary>
    public static string StageOf(RunRecord run) =>
        run.Spec.TrainSplit == "none" ? "eval" : RunNames.Of(run.Spec.Stage) + (RungOf(run.Spec) is string rung ? $" rung {rung}" : "");

    /// <summary>The successive-halving rung ("1/2") a search run trained in, or null for a grid search's run.</summary>
    public static string? RungOf(RunSpec spec) =>
        spec.Stage == RunStage.Search && spec.TrainingJson.Contains("\"rung\"", StringComparison.Ordinal)
        && JsonNode.Parse(spec.TrainingJson)?["rung"] is JsonValue v && v.TryGetValue(out string? rung) ? rung : null;

    /// <summary>One format for every rate, three significant digits: 1.00e-03, 3.93e-05, 1.14e-04, 0.00e+00.</summary>
    public static string Scientific(double value) => value.ToString("0.00e+00", CultureInfo.InvariantCulture);

    /// <summary>The hyperparameter JSON as "rank=8 alpha=8" (sorted keys; with a "method." prefix when the run
    /// combines methods; strings unquoted, lists as JSON).</summary>
    public static string CompactHypers(string hyperJson)
    {
        if (JsonNode.Parse(hyperJson) is not JsonObject root) return hyperJson;
        bool perMethod = root.Count > 0 && root.All(p => p.Value is JsonObject);
        var pairs = perMethod
            ? root.SelectMany(m => ((JsonObject)m.Value!).Select(p => (Key: root.Count > 1 ? $"{m.Key}.{p.Key}" : p.Key, p.Value)))
            : root.Select(p => (p.Key, p.Value));
        return string.Join(" ", pairs.Select(p => $"{p.Key}={HyperValue(p.Value)}"));
    }

    static string HyperValue(JsonNode? value) => value switch
    {
        null => "null",
        JsonValue v when v.TryGetValue(out string? text) => text,
        _ => value.ToJsonString(),
    };

    static string OneLine(string text) => text.ReplaceLineEndings(" ");

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
