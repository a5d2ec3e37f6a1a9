using System.Globalization;
using System.Text.Json.Nodes;

namespace PeftSharp.Data;

/// <summary>
/// What an image goes through before the model sees it: decoded to RGB, resized (the whole image, bicubic with
/// antialiasing, to a square of <see cref="ImageSize"/>) and normalised. A trained model is only right with the
/// preprocessing it was trained with, so adapter files, merged checkpoints and run records carry this record and
/// evaluation and prediction apply it (timm keeps the same facts in its pretrained_cfg).
/// </summary>
public sealed record Preprocessing(int ImageSize, Normalization Normalization)
{
    /// <summary>The one resize rule the data loader implements (named, so a file from a future rule is refused).</summary>
    public const string ResizeRule = "squash-bicubic-antialias";

    /// <summary>Metadata key of a checkpoint's preprocessing (JSON), beside timm's "config".</summary>
    public const string MetadataKey = "preprocessing";

    public JsonObject ToJson() => new()
    {
        ["image_size"] = ImageSize,
        ["resize"] = ResizeRule,
        ["normalization"] = Normalization.Name,
        ["mean"] = new JsonArray(Normalization.Mean.Select(m => (JsonNode)JsonValue.Create(m)).ToArray()),
        ["std"] = new JsonArray(Normalization.Std.Select(s => (JsonNode)JsonValue.Create(s)).ToArray()),
    };

    /// <summary>Reads the record written by <see cref="ToJson"/>; <paramref name="where"/> names the file and field in
    /// errors ("adapter_config.json 'preprocessing'").</summary>
    public static Preprocessing FromJson(JsonNode? node, string where)
    {
        if (node is not JsonObject o) throw new PeftSharpException($"{where}: expected an object with image_size, resize and normalization");
        int size = JsonFields.Int(o, "image_size", where);
        if (size <= 0) throw new PeftSharpException($"{where}.image_size: expected a positive integer, got {size}");
        string resize = JsonFields.String(o, "resize", where);
        if (resize != ResizeRule) throw new PeftSharpException($"{where}.resize: '{resize}' is not a resize rule this version implements (expected '{ResizeRule}')");
        var normalization = Normalization.FromName(JsonFields.String(o, "normalization", where));
        // A preset's numbers are fixed; a file whose mean/std disagree with its preset name was edited or is from
        // elsewhere, and guessing which of the two is meant would be a silent wrong setup.
        if (o["mean"] is JsonNode mean && !SameNumbers(mean, normalization.Mean) || o["std"] is JsonNode std && !SameNumbers(std, normalization.Std))
            throw new PeftSharpException($"{where}: mean/std do not match the '{normalization.Name}' preset ({Numbers(normalization.Mean)} / {Numbers(normalization.Std)})");
        return new Preprocessing(size, normalization);
    }

    static bool SameNumbers(JsonNode node, IReadOnlyList<float> expected) =>
        node is JsonArray a && a.Count == expected.Count &&
        a.Select((v, i) => v is JsonValue jv && jv.TryGetValue(out double d) && Math.Abs(d - expected[i]) < 1e-6).All(ok => ok);

    static string Numbers(IReadOnlyList<float> values) => "[" + string.Join(", ", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]";

    /// <summary>An evaluation loader of <paramref name="data"/> (dataset order, no augmentation) that applies this
    /// preprocessing: what eval, predict and a training run's own evaluation feed the model.</summary>
    public DataLoader Loader(ImageDataset data, int batchSize = 64) => new(data, new DataLoaderOptions
    {
        ImageSize = ImageSize, Normalization = Normalization, BatchSize = batchSize, Shuffle = false,
    });

    /// <summary>"32 px, inception normalisation".</summary>
    public override string ToString() => $"{ImageSize} px, {Normalization.Name} normalisation";
}

/// <summary>Typed reads of JSON fields whose errors name the file and the field and say what was expected.</summary>
public static class JsonFields
{
    public static int Int(JsonObject o, string field, string where) =>
        o[field] is JsonValue v && v.TryGetValue(out int i) ? i
            : throw Expected(o, field, where, "an integer");

    public static int? OptionalInt(JsonObject o, string field, string where) => o[field] is null ? null : Int(o, field, where);

    public static string String(JsonObject o, string field, string where) =>
        o[field] is JsonValue v && v.TryGetValue(out string? s) ? s
            : throw Expected(o, field, where, "a string");

    public static string? OptionalString(JsonObject o, string field, string where) => o[field] is null ? null : String(o, field, where);

    public static bool? OptionalBool(JsonObject o, string field, string where) =>
        o[field] is null ? null : o[field] is JsonValue v && v.TryGetValue(out bool b) ? b : throw Expected(o, field, where, "true or false");

    public static double? OptionalDouble(JsonObject o, string field, string where) =>
        o[field] is null ? null : o[field] is JsonValue v && v.TryGetValue(out double d) ? d : throw Expected(o, field, where, "a number");

    public static IReadOnlyList<string>? OptionalStrings(JsonObject o, string field, string where)
    {
        if (o[field] is null) return null;
        if (o[field] is JsonArray a && a.All(e => e is JsonValue v && v.TryGetValue(out string? _)))
            return a.Select(e => e!.GetValue<string>()).ToList();
        throw Expected(o, field, where, "an array of strings");
    }

    static PeftSharpException Expected(JsonObject o, string field, string where, string what) =>
        new($"{where}: field '{field}' must be {what}, got {(o[field] is null ? "nothing" : o[field]!.ToJsonString())}");
}
