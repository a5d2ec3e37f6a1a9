using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;

namespace PeftSharp.Checkpoints;

/// <summary>
/// Parses, validates and writes the JSON header of a safetensors file. Every problem with a file becomes a
/// <see cref="PeftSharpException"/> whose message is one line, "&lt;path&gt;: &lt;problem&gt;".
/// </summary>
internal static class SafeTensorsHeader
{
    /// <summary>The reference implementation's limit; a larger length means a corrupt file or not safetensors at all.</summary>
    internal const long MaxHeaderBytes = 100_000_000;

    internal const string MetadataKey = "__metadata__";

    internal sealed record Parsed(IReadOnlyList<SafeTensorInfo> Tensors, IReadOnlyDictionary<string, string> Metadata);

    /// <summary>
    /// Parses the header and checks every entry against the <paramref name="dataLength"/> bytes that follow it.
    /// The returned tensors are sorted by data offset.
    /// </summary>
    internal static Parsed Parse(string path, byte[] json, long dataLength)
    {
        try
        {
            return ParseValid(path, json, dataLength);
        }
        catch (InvalidOperationException e) when (e is not ObjectDisposedException)
        {
            // JsonDocument unescapes strings lazily and throws this for escapes such as a lone surrogate "\ud800".
            throw Error(path, $"header is not valid JSON ({OneLine(e.Message)})");
        }
    }

    static Parsed ParseValid(string path, byte[] json, long dataLength)
    {
        using var doc = ParseJson(path, json);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw Error(path, $"header must be a JSON object of tensor entries, found {Kind(root)}");

        var tensors = new List<SafeTensorInfo>();
        IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in root.EnumerateObject())
        {
            // JSON allows repeated keys, but which entry wins would be a guess.
            if (!seen.Add(prop.Name))
                throw Error(path, $"header lists {Quote(prop.Name)} more than once");
            if (prop.Name == MetadataKey)
                metadata = ParseMetadata(path, prop.Value);
            else
                tensors.Add(ParseEntry(path, prop.Name, prop.Value, dataLength));
        }

        // OrderBy is stable, so equal offsets (zero-byte tensors) keep header order.
        var ordered = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        CheckLayout(path, ordered, dataLength);
        return new Parsed(ordered, metadata);
    }

    static JsonDocument ParseJson(string path, byte[] json)
    {
        // JsonDocument decodes strings lazily, so bad UTF-8 inside a name would otherwise surface later as a crash.
        if (!Utf8.IsValid(json))
            throw Error(path, $"header is not valid UTF-8 (bad byte at header offset {InvalidUtf8Offset(json)})");
        try
        {
            return JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw Error(path, $"header is not valid JSON ({OneLine(e.Message)})");
        }
    }

    static int InvalidUtf8Offset(byte[] bytes)
    {
        Utf8.ToUtf16(bytes, new char[bytes.Length], out int read, out _, replaceInvalidSequences: false);
        return read;
    }

    static IReadOnlyDictionary<string, string> ParseMetadata(string path, JsonElement value)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (value.ValueKind == JsonValueKind.Null) return metadata; // the reference accepts null as "no metadata"
        if (value.ValueKind != JsonValueKind.Object)
            throw Error(path, $"{MetadataKey} must be a JSON object of strings, found {Kind(value)}");
        foreach (var prop in value.EnumerateObject())
        {
            if (prop.Value.ValueKind != JsonValueKind.String)
                throw Error(path, $"{MetadataKey} value {Quote(prop.Name)} must be a string, found {Kind(prop.Value)}");
            if (!metadata.TryAdd(prop.Name, prop.Value.GetString()!))
                throw Error(path, $"{MetadataKey} lists {Quote(prop.Name)} more than once");
        }
        return metadata;
    }

    static SafeTensorInfo ParseEntry(string path, string name, JsonElement entry, long dataLength)
    {
        string tensor = $"tensor {Quote(name)}";
        if (entry.ValueKind != JsonValueKind.Object)
            throw Error(path, $"{tensor}: entry must be a JSON object with dtype, shape and data_offsets, found {Kind(entry)}");

        var dtype = ParseDType(path, tensor, Field(path, tensor, entry, "dtype"));
        var shape = ParseIntegers(path, tensor, "shape", Field(path, tensor, entry, "shape"), "dimensions");
        var offsets = ParseIntegers(path, tensor, "data_offsets", Field(path, tensor, entry, "data_offsets"), "byte offsets");
        if (offsets.Length != 2)
            throw Error(path, $"{tensor}: data_offsets must be [begin, end], found {offsets.Length} numbers");

        long begin = offsets[0], end = offsets[1];
        string range = $"data_offsets [{begin}, {end}]";
        if (begin > end)
            throw Error(path, $"{tensor}: {range} has begin after end");
        if (end > dataLength)
            throw Error(path, $"{tensor}: {range} run past the end of the data section ({dataLength} bytes)");

        long expected = ByteCount(path, tensor, dtype, shape);
        if (end - begin != expected)
            throw Error(path, $"{tensor}: {range} span {end - begin} bytes but {dtype} {FormatShape(shape)} needs {expected}");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    static JsonElement Field(string path, string tensor, JsonElement entry, string field)
    {
        if (!entry.TryGetProperty(field, out var value))
            throw Error(path, $"{tensor}: missing \"{field}\"");
        return value;
    }

    static SafeTensorDType ParseDType(string path, string tensor, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.String)
            throw Error(path, $"{tensor}: dtype must be a string such as \"F32\", found {Kind(value)}");
        string text = value.GetString()!;
        if (SafeTensors.TryParseDType(text, out var dtype)) return dtype;
        string known = string.Join(", ", Enum.GetNames<SafeTensorDType>());
        throw Error(path, $"{tensor}: unsupported dtype {Quote(text)} (expected one of {known})");
    }

    /// <summary>Reads an array of non-negative 64-bit integers (a shape or a pair of offsets).</summary>
    static long[] ParseIntegers(string path, string tensor, string field, JsonElement value, string what)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw Error(path, $"{tensor}: {field} must be an array of {what}, found {Kind(value)}");
        var result = new long[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long n) || n < 0)
                throw Error(path, $"{tensor}: {field}[{i}] must be a non-negative integer, found {Raw(item)}");
            result[i++] = n;
        }
        return result;
    }

    static long ByteCount(string path, string tensor, SafeTensorDType dtype, long[] shape)
    {
        try
        {
            return checked(shape.Aggregate(1L, (n, d) => n * d) * SafeTensors.ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw Error(path, $"{tensor}: shape {FormatShape(shape)} is too large to address");
        }
    }

    /// <summary>
    /// Tensors must tile the data section exactly: the first starts at 0, each starts where the previous ends,
    /// and the last ends at the end of the file. This is the reference implementation's rule (it forbids holes
    /// and trailing bytes), so every file accepted here loads in Python too, and stray bytes, which only a
    /// broken writer or a damaged file produce, are reported rather than silently ignored.
    /// </summary>
    static void CheckLayout(string path, List<SafeTensorInfo> ordered, long dataLength)
    {
        long next = 0;
        SafeTensorInfo? previous = null;
        foreach (var t in ordered)
        {
            if (t.Begin < next)
                throw Error(path, $"tensors {Quote(previous!.Name)} [{previous.Begin}, {previous.End}] and {Quote(t.Name)} [{t.Begin}, {t.End}] overlap");
            if (t.Begin > next)
                throw Error(path, $"{t.Begin - next} unused bytes before tensor {Quote(t.Name)} (it begins at {t.Begin}, expected {next}); safetensors data must be packed without holes");
            next = t.End;
            previous = t;
        }
        if (next != dataLength)
            throw Error(path, $"{dataLength - next} trailing bytes after the last tensor (tensors end at {next}, the data section is {dataLength} bytes)");
    }

    /// <summary>
    /// Writes the header for tensors already laid out in order, padded with spaces to a multiple of 8 so the
    /// data section starts 8-byte aligned. Metadata goes last, as in the Python-written files we test against;
    /// key order in a JSON object carries no meaning to readers.
    /// </summary>
    internal static byte[] Write(IReadOnlyList<SafeTensorInfo> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        // Relaxed escaping writes quotes as \" and non-ASCII as UTF-8, like Python's json and serde_json.
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using (var w = new Utf8JsonWriter(buffer, options))
        {
            w.WriteStartObject();
            foreach (var t in tensors)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToString());
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(t.Begin);
                w.WriteNumberValue(t.End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata) w.WriteString(key, value);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    internal static PeftSharpException Error(string path, string problem) => new($"{path}: {problem}");

    internal static string FormatShape(long[] shape) =>
        "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";

    /// <summary>Quotes a name for a message, escaping control characters so the message stays on one line.</summary>
    internal static string Quote(string name)
    {
        var sb = new StringBuilder(name.Length + 2).Append('"');
        foreach (char c in name)
        {
            if (c == '"' || c == '\\') sb.Append('\\').Append(c);
            else if (char.IsControl(c)) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => e.ValueKind.ToString(),
    };

    static string Raw(JsonElement e)
    {
        string raw = OneLine(e.GetRawText());
        return raw.Length <= 40 ? raw : raw[..40] + "…";
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ");
}
