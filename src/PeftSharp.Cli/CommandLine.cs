using System.Globalization;

namespace PeftSharp.Cli;

/// <summary>
/// The parsed command line of one verb: options `--name value`, flags `--name`, and repeatable options. Every
/// option a verb reads is declared by reading it; <see cref="RejectUnknown"/> then names anything left over.
/// </summary>
public sealed class CommandLine
{
    readonly Dictionary<string, List<string>> values = new();
    readonly HashSet<string> flags = new();
    readonly HashSet<string> read = new();
    readonly List<string> positional = new();

    public CommandLine(string verb, IEnumerable<string> args, IEnumerable<string> flagNames)
    {
        Verb = verb;
        var flagSet = flagNames.ToHashSet();
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a == "--")
            {
                positional.Add(a);
                continue;
            }
            string name = a[2..];
            string? inline = null;
            int eq = name.IndexOf('=');
            if (eq > 0)
            {
                inline = name[(eq + 1)..];
                name = name[..eq];
            }
            if (flagSet.Contains(name) && inline == null)
            {
                flags.Add(name);
                continue;
            }
            string value = inline ?? (i + 1 < list.Count ? list[++i] : throw new PeftSharpException($"{verb}: option --{name} needs a value"));
            if (!values.TryGetValue(name, out var vs)) values[name] = vs = new List<string>();
            vs.Add(value);
        }
    }

    public string Verb { get; }
    public IReadOnlyList<string> Positional => positional;

    public bool Flag(string name)
    {
        read.Add(name);
        return flags.Contains(name);
    }

    public string? Get(string name)
    {
        read.Add(name);
        if (!values.TryGetValue(name, out var vs)) return null;
        if (vs.Count > 1) throw new PeftSharpException($"{Verb}: option --{name} given {vs.Count} times");
        return vs[0];
    }

    public IReadOnlyList<string> GetAll(string name)
    {
        read.Add(name);
        return values.TryGetValue(name, out var vs) ? vs : new List<string>();
    }

    public string Require(string name) =>
        Get(name) ?? throw new PeftSharpException($"{Verb}: missing required option --{name}");

    public int Int(string name, int fallback)
    {
        string? v = Get(name);
        if (v == null) return fallback;
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)
            ? i : throw new PeftSharpException($"{Verb}: --{name} expects an integer, got '{v}'");
    }

    public double Double(string name, double fallback) => Get(name) is string v ? Number(name, v) : fallback;

    public double? OptionalDouble(string name) => Get(name) is string v ? Number(name, v) : null;

    /// <summary>A comma-separated list of numbers (e.g. <c>--lrs 1e-3,1e-2</c>).</summary>
    public double[] Doubles(string name, double[] fallback) =>
        Get(name) is string v
            ? v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => Number(name, t)).ToArray()
            : fallback;

    double Number(string name, string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d)
            ? d : throw new PeftSharpException($"{Verb}: --{name} expects a number, got '{text}'");

    /// <summary>Fails on options nobody read (typos) and on positional arguments beyond <paramref name="maxPositional"/>.</summary>
    public void RejectUnknown(int maxPositional = 0)
    {
        var unknown = values.Keys.Concat(flags).Where(k => !read.Contains(k)).ToList();
        if (unknown.Count > 0)
            throw new PeftSharpException($"{Verb}: unknown option{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Select(u => "--" + u))} (see 'peftsharp help {Verb}')");
        if (positional.Count > maxPositional)
            throw new PeftSharpException($"{Verb}: unexpected argument '{positional[maxPositional]}'");
    }
}
