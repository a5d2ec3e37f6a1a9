using System.Globalization;
using System.Text.Json.Nodes;

namespace PeftSharp.Tuners;

public enum HyperKind { Int, Double, Bool, List }

/// <summary>
/// One hyperparameter of a method: its uniform name (rank, prompts, scale, dropout, targets, k, alpha, ...), kind,
/// default, the study's search grid and the allowed range.
/// </summary>
public sealed record HyperSpec(string Name, HyperKind Kind, object Default, object[] Grid, string Help,
                               double Min = double.NegativeInfinity, double Max = double.PositiveInfinity,
                               bool Nullable = false)
{
    public static HyperSpec Int(string name, int @default, int[] grid, string help, int min = 1, int max = int.MaxValue) =>
        new(name, HyperKind.Int, @default, grid.Cast<object>().ToArray(), help, min, max == int.MaxValue ? double.PositiveInfinity : max);

    public static HyperSpec Double(string name, double @default, double[] grid, string help,
                                   double min = double.NegativeInfinity, double max = double.PositiveInfinity) =>
        new(name, HyperKind.Double, @default, grid.Cast<object>().ToArray(), help, min, max);

    public static HyperSpec OptionalDouble(string name, string help, double min = 0) =>
        new(name, HyperKind.Double, "none", Array.Empty<object>(), help, min, double.PositiveInfinity, Nullable: true);

    public static HyperSpec Bool(string name, bool @default, string help, bool[]? grid = null) =>
        new(name, HyperKind.Bool, @default, (grid ?? Array.Empty<bool>()).Cast<object>().ToArray(), help);

    public static HyperSpec List(string name, string @default, string help) =>
        new(name, HyperKind.List, @default, Array.Empty<object>(), help);

    /// <summary>Parses and range-checks a value given as text; <paramref name="where"/> names it in errors.</summary>
    public object Parse(string text, string where)
    {
        text = text.Trim();
        switch (Kind)
        {
            case HyperKind.Int:
                if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i))
                    throw new PeftSharpException($"{where}: '{Name}' must be an integer, got '{text}'");
                CheckRange(i, where);
                return i;
            case HyperKind.Double:
                if (Nullable && text is "none" or "null" or "") return "none";
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || !double.IsFinite(d))
                    throw new PeftSharpException($"{where}: '{Name}' must be a number, got '{text}'");
                CheckRange(d, where);
                return d;
            case HyperKind.Bool:
                return text.ToLowerInvariant() switch
                {
                    "true" or "1" or "yes" => true,
                    "false" or "0" or "no" => false,
                    _ => throw new PeftSharpException($"{where}: '{Name}' must be true or false, got '{text}'"),
                };
            default:
                var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (items.Length == 0) throw new PeftSharpException($"{where}: '{Name}' needs at least one entry");
                return string.Join(",", items);
        }
    }

    void CheckRange(double v, string where)
    {
        if (v < Min || v > Max)
        {
            string range = Max == double.PositiveInfinity ? $">= {Fmt(Min)}" : Min == double.NegativeInfinity ? $"<= {Fmt(Max)}" : $"in [{Fmt(Min)}, {Fmt(Max)}]";
            throw new PeftSharpException($"{where}: '{Name}' must be {range}, got {Fmt(v)}");
        }
    }

    internal static string Fmt(object v) => v switch
    {
        double d => d.ToString("G", CultureInfo.InvariantCulture),
        float f => f.ToString("G", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };
}

/// <summary>The hyperparameter values of one applied method (defaults filled in, all validated).</summary>
public sealed class Hyperparameters
{
    readonly Dictionary<string, object> values;
    readonly string method;

    Hyperparameters(string method, Dictionary<string, object> values)
    {
        this.method = method;
        this.values = values;
    }

    public IReadOnlyDictionary<string, object> Values => values;

    /// <summary>Defaults of <paramref name="specs"/> overridden by <paramref name="settings"/> (name → text).</summary>
    public static Hyperparameters Create(string method, IReadOnlyList<HyperSpec> specs, IReadOnlyDictionary<string, string> settings)
    {
        var values = specs.ToDictionary(s => s.Name, s => s.Default);
        foreach (var (name, text) in settings)
        {
            var spec = specs.FirstOrDefault(s => s.Name == name)
                ?? throw new PeftSharpException(specs.Count == 0
                    ? $"method '{method}': has no hyperparameters, got '{name}'"
                    : $"method '{method}': unknown hyperparameter '{name}' (known: {string.Join(", ", specs.Select(s => s.Name))})");
            values[name] = spec.Parse(text, $"method '{method}'");
        }
        return new Hyperparameters(method, values);
    }

    public int Int(string name) => (int)Get(name);
    public double Double(string name) => Convert.ToDouble(Get(name), CultureInfo.InvariantCulture);
    public double? OptionalDouble(string name) => Get(name) is double d ? d : null;
    public bool Bool(string name) => (bool)Get(name);
    public string[] List(string name) => ((string)Get(name)).Split(',', StringSplitOptions.RemoveEmptyEntries);

    object Get(string name) =>
        values.TryGetValue(name, out var v) ? v : throw new InvalidOperationException($"method '{method}' declares no hyperparameter '{name}'");

    public JsonObject ToJson()
    {
        var o = new JsonObject();
        foreach (var (k, v) in values)
            o[k] = v switch
            {
                int i => JsonValue.Create(i),
                double d => JsonValue.Create(d),
                bool b => JsonValue.Create(b),
                _ => JsonValue.Create(v.ToString()),
            };
        return o;
    }

    public override string ToString() => string.Join(",", values.Select(kv => $"{kv.Key}={HyperSpec.Fmt(kv.Value)}"));
}
