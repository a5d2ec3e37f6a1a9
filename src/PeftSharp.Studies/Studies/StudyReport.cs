using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;

namespace PeftSharp.Studies;

/// <summary>One analysis of the unifying study: it obtains its runs through the context and returns its report.</summary>
public interface IStudy
{
    string Name { get; }
    string Summary { get; }
    /// <summary>Runs the analysis under the profile named <paramref name="profile"/> (quick, default or full),
    /// narrowed by <paramref name="overrides"/>.</summary>
    StudyOutput Run(StudyContext context, string profile, StudyOverrides? overrides = null);

    /// <summary>The checkpoint the study runs on unless told otherwise (the shipped ViT backbone).</summary>
    string DefaultCheckpoint() => Checkpoints.ShippedModels.RequireDefaultVit();
}

/// <summary>A narrower profile from the command line (a quick look, or a test on a tiny backbone): other tasks, a
/// subset of the methods, fewer epochs, other training-set sizes (many-shot).</summary>
public sealed record StudyOverrides(IReadOnlyList<string>? Tasks = null, IReadOnlyList<string>? Methods = null, int? Epochs = null,
                                    IReadOnlyList<int>? TrainSizes = null)
{
    public BenchProfile Apply(BenchProfile profile) =>
        (profile with { Tasks = Tasks ?? profile.Tasks, Methods = Methods ?? profile.Methods, Epochs = Epochs ?? profile.Epochs }).Validate();
}

/// <summary>A study's result: its JSON document, a self-contained HTML page and a short Markdown table.</summary>
public sealed record StudyOutput(string Name, JsonObject Json, string Html, string Summary)
{
    /// <summary>Writes DIR/NAME.html and DIR/NAME.json and returns their paths.</summary>
    public (string Html, string Json) Write(string directory)
    {
        Directory.CreateDirectory(directory);
        string html = Path.Combine(directory, Name + ".html"), json = Path.Combine(directory, Name + ".json");
        File.WriteAllText(html, Html);
        File.WriteAllText(json, Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return (html, json);
    }
}

/// <summary>The studies the <c>study</c> verb knows, by name.</summary>
public static class StudyCatalog
{
    public static IReadOnlyList<IStudy> All { get; } = new IStudy[] { new EnsembleStudy(), new RobustnessStudy(), new CapacityStudy(), new ManyShotStudy(), new VlScalingStudy() };

    public static IReadOnlyList<string> Profiles { get; } = new[] { "quick", "default", "full" };

    public static IStudy Get(string name) =>
        All.FirstOrDefault(s => s.Name == name)
        ?? throw new PeftSharpException($"unknown study '{name}'; expected one of {string.Join(", ", All.Select(s => s.Name))}");

    public static void CheckProfile(string profile)
    {
        if (!Profiles.Contains(profile))
            throw new PeftSharpException($"unknown study profile '{profile}'; expected one of {string.Join(", ", Profiles)}");
    }
}

/// <summary>What only studies add to the shared report pieces (<see cref="Reporting.Html"/>, <see cref="Reporting.Charts"/>):
/// the JSON header and number rounding.</summary>
public static class StudyReport
{
    /// <summary>The header every study's JSON starts with: which study, profile, protocol, backbone and time.</summary>
    public static JsonObject Header(string study, string profile, string protocol, StudyContext context, double seconds) => new()
    {
        ["study"] = study, ["profile"] = profile, ["protocol"] = protocol,
        ["backbone"] = Path.GetFileName(context.Options.Checkpoint), ["device"] = context.Device.ToString(),
        ["seconds"] = Math.Round(seconds, 1), ["units"] = "top-1 and overlaps in % of the test examples",
    };

    public static JsonArray Array(IEnumerable<JsonNode?> items) => new(items.ToArray());

    public static double Round(double v) => Math.Round(v, 3);
}
