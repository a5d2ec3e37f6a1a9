using TorchSharp;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Evaluation;
using PeftSharp.Models;
using PeftSharp.Tuners;

namespace PeftSharp.Cli.Commands;

/// <summary>Lists the methods with hyperparameters, grids, mergeability and trainable-parameter counts for a model.</summary>
public sealed class MethodsCommand : ICommand
{
    public string Name => "methods";
    public string Summary => "list PEFT methods, their hyperparameters and trainable-parameter counts";
    public IEnumerable<string> Flags => new[] { "help", "json" };
    public string Usage => """
        peftsharp methods [--model PRESET] [--config JSON|FILE] [--method ID] [--set key=value ...] [--json]
          For each method (or the one given; compositions like ssf+lora work too): hyperparameters with their
          values and the study's grid, whether it merges into the base weights, and the trainable parameters
          of the backbone (head excluded) for the model (default vit_base_patch16_224). --set values go to
          every listed method that has that hyperparameter (e.g. --set rank=16); method.key targets one.
        """;

    public int Run(CommandLine line)
    {
        var config = VitConfig.Resolve(line.Get("model") ?? (line.Get("config") == null ? "vit_base_patch16_224" : null), line.Get("config"))!;
        string? only = line.Get("method");
        var settings = TunerRegistry.ParseSettings(line.GetAll("set"));
        bool json = line.Flag("json");
        line.RejectUnknown();

        var specs = only != null ? new List<string> { only } : TunerRegistry.All.Select(m => m.Id).ToList();
        if (only == null) ValidateSettingsApplySomewhere(settings);
        var rows = new List<JsonObject>();
        foreach (var spec in specs)
        {
            var methods = TunerRegistry.Parse(spec);
            // Listing every method: a setting goes only to the methods that declare it.
            var relevant = only != null ? settings : settings.Where(s => methods.Any(m => Declares(m, s.Key))).ToDictionary(s => s.Key, s => s.Value);
            // A video-only method is counted on the video ViT of the same width and depth (16 frames, tubelets of 2).
            using var model = methods.Any(m => m.VideoOnly)
                ? (TorchSharp.torch.nn.Module)VideoInflation.Inflate(new VisionTransformer(config), 16, 2, config.NumClasses)
                : new VisionTransformer(config);
            var peft = model is VideoVisionTransformer video ? PeftModel.Create(video, spec, relevant) : PeftModel.Create((VisionTransformer)model, spec, relevant);
            var hyper = new JsonObject();
            var grid = new JsonObject();
            foreach (var t in peft.Tuners.GroupBy(t => t.Method.Id).Select(g => g.First()))
            {
                foreach (var (k, v) in t.Hypers.ToJson()) hyper[methods.Count > 1 ? $"{t.Method.Id}.{k}" : k] = v?.DeepClone();
                foreach (var h in t.Method.Hypers.Where(h => h.Grid.Length > 0))
                    grid[methods.Count > 1 ? $"{t.Method.Id}.{h.Name}" : h.Name] = new JsonArray(h.Grid.Select(GridValue).ToArray());
            }
            long trainable = peft.CountTrainable(), total = peft.CountTotal();
            rows.Add(new JsonObject
            {
                ["method"] = peft.MethodSpec, ["summary"] = string.Join(" + ", methods.Select(m => m.Summary)),
                ["hyper"] = hyper, ["grid"] = grid, ["trainable_params"] = trainable, ["total_params"] = total,
                ["trainable_percent"] = Math.Round(100.0 * trainable / total, 4), ["mergeable"] = peft.Mergeable,
                ["reference"] = string.Join("; ", methods.Select(m => m.Reference).Where(r => r.Length > 0)),
                ["published_vtab1k"] = methods.Count == 1 ? Published(methods[0]) : null,
            });
        }
        if (json) Console.WriteLine(new JsonArray(rows.ToArray()).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        else PrintTable(rows, config);
        return 0;
    }

    /// <summary>The method's published VTAB-1K figure (ViT-B/16): the unifying study's row where it has one, else the
    /// method's own source; null when none is known.</summary>
    static JsonObject? Published(TunerMethod method)
    {
        if (PublishedResults.UnifyingStudy.TryGetValue(method.Id, out var row))
            return new JsonObject
            {
                ["mean_of_groups"] = row.MeanOfGroups, ["mean19"] = row.Mean19,
                ["source"] = "Mai et al., CVPR 2025 (the unifying study's VTAB-1K table)",
            };
        return method.Published is PublishedFigure f
            ? new JsonObject { ["mean_of_groups"] = f.MeanOfGroups, ["mean19"] = f.Mean19, ["source"] = f.Source }
            : null;
    }

    static JsonNode GridValue(object g) => g switch
    {
        int i => JsonValue.Create(i),
        double d => JsonValue.Create(d),
        bool b => JsonValue.Create(b),
        _ => JsonValue.Create(g.ToString())!,
    };

    static bool Declares(TunerMethod m, string key)
    {
        int dot = key.IndexOf('.');
        return dot > 0 ? key[..dot] == m.Id && m.Hypers.Any(h => h.Name == key[(dot + 1)..]) : m.Hypers.Any(h => h.Name == key);
    }

    static void ValidateSettingsApplySomewhere(Dictionary<string, string> settings)
    {
        foreach (var key in settings.Keys)
            if (!TunerRegistry.All.Any(m => Declares(m, key)))
                throw new PeftSharpException($"unknown hyperparameter '{key}' (known: {string.Join(", ", TunerRegistry.All.SelectMany(m => m.Hypers.Select(h => h.Name)).Distinct())})");
    }

    static void PrintTable(List<JsonObject> rows, VitConfig config)
    {
        Console.WriteLine($"model: D={config.EmbedDim}, L={config.Depth}, heads={config.NumHeads}, patch={config.PatchSize}, img={config.ImgSize} (counts exclude the head)");
        Console.WriteLine($"{"method",-18} {"trainable",13} {"%",9} {"merge",6}  hyperparameters");
        foreach (var r in rows)
        {
            string hyper = string.Join(", ", r["hyper"]!.AsObject().Select(kv => $"{kv.Key}={kv.Value}"));
            Console.WriteLine($"{r["method"],-18} {r["trainable_params"]!.GetValue<long>(),13:N0} {r["trainable_percent"]!.GetValue<double>(),8:F4}% {(r["mergeable"]!.GetValue<bool>() ? "yes" : "no"),6}  {hyper}");
        }
    }
}
