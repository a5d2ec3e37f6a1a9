using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace PeftSharp.Results;

/// <summary>
/// One spelling per JSON value: object keys sorted (ordinal), no whitespace, integers as integers and other numbers in
/// the shortest round-trip form (so 1e-3, 0.001 and 0.0010 agree, and 1.0 equals 1). Run keys hash this text, so two
/// configurations that mean the same thing get the same key.
/// </summary>
public static class CanonicalJson
{
    static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The canonical text of <paramref name="json"/>, which must be a JSON object; <paramref name="what"/> names it in errors.</summary>
    public static string NormalizeObject(string json, string what)
    {
        ArgumentNullException.ThrowIfNull(json, what);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new PeftSharpException($"{what}: not valid JSON ({e.Message.Split('\n')[0].TrimEnd('.')}), expected a JSON object");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new PeftSharpException($"{what}: expected a JSON object, got a JSON {doc.RootElement.ValueKind.ToString().ToLowerInvariant()}");
            return Write(doc.RootElement, what);
        }
    }

    static string Write(JsonElement root, string what)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, WriterOptions)) WriteElement(writer, root, what);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    static void WriteElement(Utf8JsonWriter w, JsonElement e, string what)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var properties = e.EnumerateObject().ToList();
                properties.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
                for (int i = 1; i < properties.Count; i++)
                    if (properties[i].Name == properties[i - 1].Name)
                        throw new PeftSharpException($"{what}: duplicate key '{properties[i].Name}' in a JSON object");
                w.WriteStartObject();
                foreach (var p in properties)
                {
                    w.WritePropertyName(p.Name);
                    WriteElement(w, p.Value, what);
                }
                w.WriteEndObject();
                break;
            case JsonValueKind.Array:
                w.WriteStartArray();
                foreach (var item in e.EnumerateArray()) WriteElement(w, item, what);
                w.WriteEndArray();
                break;
            case JsonValueKind.Number:
                WriteNumber(w, e);
                break;
            default:
                e.WriteTo(w);   // strings, true, false, null: re-escaped by the writer, so one spelling each
                break;
        }
    }

    static void WriteNumber(Utf8JsonWriter w, JsonElement e)
    {
        if (e.TryGetInt64(out long l)) w.WriteNumberValue(l);
        else if (e.TryGetDouble(out double d) && double.IsFinite(d))
        {
            // An integral double (1.0, 1e3) is written as the integer, matching what TryGetInt64 gives for "1".
            if (d == Math.Floor(d) && Math.Abs(d) < 9.2e18) w.WriteNumberValue((long)d);
            else w.WriteNumberValue(d);
        }
        else w.WriteRawValue(e.GetRawText());   // beyond double range: keep the text as given
    }
}
