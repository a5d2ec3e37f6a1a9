using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tuners;

/// <summary>
/// Adapter-only files: a folder with adapter_config.json (method, hyperparameters, base model, head) and
/// adapter_model.safetensors (the trainable tensors under their timm-style names, wrapper paths removed).
/// LoRA additionally reads and writes Hugging Face peft's format (peft_type LORA, keys
/// base_model.model.&lt;path&gt;.lora_A.weight / lora_B.weight, scaling lora_alpha / r).
/// </summary>
public static class AdapterFiles
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";
    const string HfPrefix = "base_model.model.";

    /// <summary>The name a parameter has without the wrappers' "base_layer" segments.</summary>
    public static string CanonicalName(string name) => name.Replace(".base_layer", "", StringComparison.Ordinal);

    /// <summary>Saves the trainable tensors and the configuration needed to rebuild them on a fresh base: the base
    /// checkpoint (path and SHA-256, so the adapter is never applied to another base by mistake), the preprocessing
    /// it was trained with and the class names of its head.</summary>
    public static void Save(PeftModel model, string directory, string? baseCheckpoint = null, Preprocessing? preprocessing = null,
                            IReadOnlyList<string>? classNames = null)
    {
        if (classNames != null && classNames.Count != model.Vit.Config.NumClasses)
            throw new PeftSharpException($"{directory}: {classNames.Count} class names for a head of {model.Vit.Config.NumClasses} classes");
        if (model.IsMerged) throw new PeftSharpException("cannot save adapter files of a merged model; unmerge first");
        Directory.CreateDirectory(directory);
        var tensors = model.TrainableParameters().ToDictionary(p => CanonicalName(p.Name), p => (Tensor)p.Parameter.detach().cpu());
        // A pre-pass's selection (SCT's channels, GPS's entries) belongs to the adapter as much as its trained values.
        foreach (var (name, buffer) in model.SelectionState()) tensors[name] = buffer.detach().cpu();
        var config = new JsonObject
        {
            ["format"] = "peftsharp-adapter",
            ["version"] = 1,
            ["method"] = model.MethodSpec,
            ["hyper"] = HyperJson(model),
            ["train_head"] = model.Options.TrainHead,
            ["towers"] = new JsonArray(model.Options.Towers.Select(t => (JsonNode)t).ToArray()),
            ["base_model"] = new JsonObject
            {
                ["kind"] = model.Root is ClipModel ? "clip" : "vit",
                ["config"] = JsonNode.Parse(model.Root is ClipModel clip ? clip.Config.ToJson() : model.Vit.Config.ToJson()),
                // A file that exists is recorded by full path and content; anything else (a hub name) as given.
                ["checkpoint"] = baseCheckpoint != null && File.Exists(baseCheckpoint) ? Path.GetFullPath(baseCheckpoint) : baseCheckpoint,
                ["checkpoint_sha256"] = baseCheckpoint != null && File.Exists(baseCheckpoint) ? FileHashes.Sha256(baseCheckpoint) : null,
            },
            ["num_classes"] = model.Vit.Config.NumClasses,
            ["class_names"] = classNames == null ? null : new JsonArray(classNames.Select(n => (JsonNode)n).ToArray()),
            ["preprocessing"] = preprocessing?.ToJson(),
        };
        WriteAtomically(Path.Combine(directory, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>
    /// Applies the saved methods to <paramref name="baseModel"/> (freshly loaded, unmodified) and loads the saved
    /// tensors; the classifier is resized first when the adapter was trained for another number of classes.
    /// Reads Hugging Face peft LoRA folders too.
    /// </summary>
    public static PeftModel Load(VisionTransformer baseModel, string directory)
    {
        var (config, configPath, weightsPath) = ReadConfig(directory);
        if (config["peft_type"] is not null) return LoadHuggingFace(baseModel, config, configPath, weightsPath);
        var (method, settings) = MethodOf(config, configPath, "vit");
        int classes = JsonFields.OptionalInt(config, "num_classes", configPath) ?? baseModel.Config.NumClasses;
        if (classes <= 0) throw new PeftSharpException($"{configPath}: field 'num_classes' must be a positive integer, got {classes}");
        if (classes != baseModel.Config.NumClasses) baseModel.ResetClassifier(classes);
        var options = new PeftOptions { TrainHead = JsonFields.OptionalBool(config, "train_head", configPath) ?? true };
        var model = PeftModel.Create(baseModel, method, settings, options);
        LoadTensors(model, weightsPath, name => name);
        return model;
    }

    /// <summary>Loads a folder's trained tensors into <paramref name="model"/>, which already has the same method
    /// applied (a run rebuilt from its record, whose initial weights a study also needs).</summary>
    public static void LoadInto(PeftModel model, string directory)
    {
        var (config, configPath, weightsPath) = ReadConfig(directory);
        if (config["peft_type"] is not null) throw new PeftSharpException($"{configPath}: a Hugging Face peft adapter; load it with Load");
        var (method, _) = MethodOf(config, configPath, null);
        if (method != model.MethodSpec) throw new PeftSharpException($"{configPath}: an adapter of '{method}', the model has '{model.MethodSpec}' applied");
        LoadTensors(model, weightsPath, name => name);
    }

    /// <summary>The method spec and hyperparameters a PeftSharp adapter folder records (to apply the same method to a
    /// base before <see cref="LoadInto"/>).</summary>
    public static (string Method, Dictionary<string, string> Settings) ReadMethod(string directory)
    {
        var (config, configPath, _) = ReadConfig(directory);
        if (config["peft_type"] is not null) throw new PeftSharpException($"{configPath}: a Hugging Face peft adapter; load it with Load");
        return MethodOf(config, configPath, "vit");
    }

    /// <summary>What an adapter folder says about itself: its method, the base it was trained on, the preprocessing
    /// it expects and its classes (nulls where it does not say, as in older files and Hugging Face peft's).</summary>
    public sealed record AdapterInfo(string Directory, string Method, string? BaseCheckpoint, string? BaseSha256,
                                     Preprocessing? Preprocessing, IReadOnlyList<string>? ClassNames, int? NumClasses, bool HuggingFace);

    /// <summary>Reads an adapter folder's config (ours or Hugging Face peft's) without loading any tensor; wrong field
    /// types are errors naming the file and the field.</summary>
    public static AdapterInfo ReadInfo(string directory)
    {
        var (config, configPath, _) = ReadConfig(directory);
        if (config["peft_type"] is not null)
            return new AdapterInfo(directory, JsonFields.String(config, "peft_type", configPath).ToLowerInvariant(), null, null, null, null, null, true);
        var (method, _) = MethodOf(config, configPath, null);
        var baseModel = config["base_model"] as JsonObject;
        if (config["base_model"] is not null && baseModel is null) throw new PeftSharpException($"{configPath}: field 'base_model' must be an object");
        string where = $"{configPath} 'base_model'";
        var info = new AdapterInfo(directory, method,
            baseModel == null ? null : JsonFields.OptionalString(baseModel, "checkpoint", where),
            baseModel == null ? null : JsonFields.OptionalString(baseModel, "checkpoint_sha256", where),
            config["preprocessing"] is null ? null : Preprocessing.FromJson(config["preprocessing"], $"{configPath} 'preprocessing'"),
            JsonFields.OptionalStrings(config, "class_names", configPath), JsonFields.OptionalInt(config, "num_classes", configPath), false);
        if (info.ClassNames != null && info.NumClasses is int n && info.ClassNames.Count != n)
            throw new PeftSharpException($"{configPath}: {info.ClassNames.Count} class_names for num_classes {n}");
        JsonFields.OptionalBool(config, "train_head", configPath);
        return info;
    }


    /// <summary>Applies the saved methods to the saved towers of <paramref name="baseModel"/> (a freshly loaded CLIP)
    /// and loads the saved tensors.</summary>
    public static PeftModel Load(ClipModel baseModel, string directory)
    {
        var (config, configPath, weightsPath) = ReadConfig(directory);
        if (config["peft_type"] is not null) throw new PeftSharpException($"{configPath}: a Hugging Face peft adapter; PeftSharp reads those for ViTs only");
        var (method, settings) = MethodOf(config, configPath, "clip");
        var towers = JsonFields.OptionalStrings(config, "towers", configPath) ?? ["visual"];
        var model = PeftModel.Create(baseModel, method, settings, new PeftOptions { TrainHead = JsonFields.OptionalBool(config, "train_head", configPath) ?? false, Towers = towers });
        LoadTensors(model, weightsPath, name => name);
        return model;
    }

    /// <summary>The kind of model a folder's adapter was saved for: "vit", "clip" or "video" (older files and Hugging
    /// Face peft's: "vit").</summary>
    public static string ReadKind(string directory)
    {
        var (config, configPath, _) = ReadConfig(directory);
        return config["base_model"] is JsonObject b ? JsonFields.OptionalString(b, "kind", $"{configPath} 'base_model'") ?? "vit" : "vit";
    }

    internal static (JsonObject Config, string ConfigPath, string WeightsPath) ReadConfig(string directory)
    {
        string configPath = Path.Combine(directory, ConfigFile), weightsPath = Path.Combine(directory, WeightsFile);
        if (!File.Exists(configPath)) throw new PeftSharpException($"{configPath}: adapter config not found");
        if (!File.Exists(weightsPath)) throw new PeftSharpException($"{weightsPath}: adapter weights not found");
        try { return (JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new PeftSharpException($"{configPath}: expected a JSON object"), configPath, weightsPath); }
        catch (JsonException e) { throw new PeftSharpException($"{configPath}: invalid JSON ({e.Message.Split('\n')[0]})"); }
    }

    /// <summary>The saved method spec and its settings; an adapter saved for the other kind of model is an error.</summary>
    internal static (string Method, Dictionary<string, string> Settings) MethodOf(JsonObject config, string configPath, string? kind)
    {
        if (JsonFields.OptionalString(config, "format", configPath) != "peftsharp-adapter")
            throw new PeftSharpException($"{configPath}: not a PeftSharp or Hugging Face peft adapter config (no 'format' or 'peft_type')");
        string saved = config["base_model"] is JsonObject b ? JsonFields.OptionalString(b, "kind", $"{configPath} 'base_model'") ?? "vit" : "vit";
        if (kind != null && saved != kind) throw new PeftSharpException($"{configPath}: an adapter for a {saved.ToUpperInvariant()} model, not for a {kind.ToUpperInvariant()} model");
        string method = JsonFields.OptionalString(config, "method", configPath) ?? throw new PeftSharpException($"{configPath}: missing field 'method'");
        var settings = new Dictionary<string, string>();
        if (config["hyper"] is not null and not JsonObject) throw new PeftSharpException($"{configPath}: field 'hyper' must be an object of method → settings");
        if (config["hyper"] is JsonObject hyper)
            foreach (var (m, values) in hyper)
            {
                if (values is not JsonObject settingsOf) throw new PeftSharpException($"{configPath}: field 'hyper.{m}' must be an object of settings");
                foreach (var (k, v) in settingsOf)
                    settings[$"{m}.{k}"] = v is JsonValue jv && jv.TryGetValue(out double d) ? d.ToString("R", CultureInfo.InvariantCulture) : v?.ToString() ?? "";
            }
        return (method, settings);
    }

    /// <summary>Writes a LoRA model in Hugging Face peft's format (targets must be whole Linear layers).</summary>
    public static void SaveHuggingFace(PeftModel model, string directory, string? baseModelName = null)
    {
        var lora = model.Tuners.OfType<WrapperTuner<LoraLinear>>().ToList();
        if (lora.Count != 1 || model.Tuners.Count != 1 || model.Tuners[0].Method is not (Lora or Dora))
            throw new PeftSharpException("Hugging Face peft format holds a single LoRA or DoRA adapter; this model has " + model.MethodSpec);
        var wrappers = lora[0].Wrappers;
        if (wrappers.Any(w => w.RowSections is not null))
            throw new PeftSharpException("Hugging Face peft format cannot express LoRA on a subset of q, k, v of the fused qkv; use targets q,k,v or qkv");
        var paths = model.Root.named_modules().Where(m => m.module is LoraLinear).Select(m => m.name).ToList();
        var targets = paths.Select(p => p.Split('.')[^1]).Distinct().ToList();
        int rank = model.Tuners[0].Hypers.Int("rank");
        double? alpha = model.Tuners[0].Hypers.OptionalDouble("alpha");
        bool rslora = model.Tuners[0].Hypers.Bool("rslora");
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, p) in model.TrainableParameters())
            tensors[HfPrefix + CanonicalName(name)] = p.detach().cpu();
        var config = new JsonObject
        {
            ["peft_type"] = "LORA", ["task_type"] = null, ["base_model_name_or_path"] = baseModelName,
            ["r"] = rank, ["lora_alpha"] = alpha ?? (rslora ? Math.Sqrt(rank) : rank),
            ["lora_dropout"] = model.Tuners[0].Hypers.Double("dropout"),
            ["target_modules"] = new JsonArray(targets.Select(t => (JsonNode)t).ToArray()),
            ["bias"] = "none", ["use_rslora"] = rslora, ["use_dora"] = model.Tuners[0].Method is Dora,
            ["init_lora_weights"] = true, ["inference_mode"] = true, ["fan_in_fan_out"] = false,
            ["modules_to_save"] = model.Options.TrainHead ? new JsonArray("head") : null,
        };
        Directory.CreateDirectory(directory);
        WriteAtomically(Path.Combine(directory, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    static PeftModel LoadHuggingFace(VisionTransformer baseModel, JsonObject config, string configPath, string weightsPath)
    {
        string type = config["peft_type"]!.GetValue<string>();
        if (type != "LORA") throw new PeftSharpException($"{configPath}: peft_type '{type}' is not supported (only LORA)");
        int r = config["r"]?.GetValue<int>() ?? throw new PeftSharpException($"{configPath}: missing 'r'");
        double alpha = config["lora_alpha"]?.GetValue<double>() ?? r;
        bool rslora = config["use_rslora"]?.GetValue<bool>() ?? false;
        bool dora = config["use_dora"]?.GetValue<bool>() ?? false;
        var targets = config["target_modules"] switch
        {
            JsonArray a => a.Select(t => t!.GetValue<string>()).ToList(),
            JsonValue v => new List<string> { v.GetValue<string>() },
            _ => throw new PeftSharpException($"{configPath}: missing 'target_modules'"),
        };
        if (config["bias"]?.GetValue<string>() is string bias && bias != "none")
            throw new PeftSharpException($"{configPath}: bias '{bias}' is not supported (only 'none')");
        bool head = config["modules_to_save"] is JsonArray saved && saved.Any(m => m!.GetValue<string>() is "head" or "classifier");
        var settings = new Dictionary<string, string>
        {
            ["rank"] = r.ToString(CultureInfo.InvariantCulture), ["alpha"] = alpha.ToString("R", CultureInfo.InvariantCulture),
            ["rslora"] = rslora ? "true" : "false",
            ["dropout"] = (config["lora_dropout"]?.GetValue<double>() ?? 0).ToString("R", CultureInfo.InvariantCulture),
            ["targets"] = string.Join(",", targets),
        };
        using (var file = SafeTensorsFile.Open(weightsPath))
            if (file.Contains(HfPrefix + "head.weight") && file.Info(HfPrefix + "head.weight").Shape[0] != baseModel.Config.NumClasses)
                baseModel.ResetClassifier((int)file.Info(HfPrefix + "head.weight").Shape[0]);
        var model = PeftModel.Create(baseModel, dora ? "dora" : "lora", settings, new PeftOptions { TrainHead = head });
        LoadTensors(model, weightsPath, name => name.StartsWith(HfPrefix, StringComparison.Ordinal) ? name[HfPrefix.Length..] : name);
        return model;
    }

    static void LoadTensors(PeftModel model, string weightsPath, Func<string, string> fileToCanonical)
    {
        using var file = SafeTensorsFile.Open(weightsPath);
        // The selection first: the shapes of some methods' trained tensors follow it (SPT's entries, NOAH's widths).
        var fileNames = file.Tensors.ToDictionary(t => fileToCanonical(t.Name), t => t.Name);
        model.RestoreSelection(name => fileNames.TryGetValue(name, out var n) ? file.ReadTensor(n) : null, weightsPath);
        var byCanonical = model.TrainableParameters().ToDictionary(p => CanonicalName(p.Name), p => (Tensor)p.Parameter);
        var selection = model.SelectionState();
        foreach (var (name, buffer) in selection) byCanonical[name] = buffer;
        var seen = new HashSet<string>();
        using (no_grad())
        {
            foreach (var info in file.Tensors)
            {
                string name = fileToCanonical(info.Name);
                if (!byCanonical.TryGetValue(name, out var target))
                    throw new PeftSharpException($"{weightsPath}: tensor '{info.Name}' matches no trainable parameter of {model.MethodSpec}");
                if (!info.Shape.SequenceEqual(target.shape))
                    throw new PeftSharpException($"{weightsPath}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}], the model expects [{string.Join(", ", target.shape)}]");
                using var value = file.ReadTensor(info.Name);
                target.copy_(value);
                seen.Add(name);
            }
        }
        var missing = byCanonical.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new PeftSharpException($"{weightsPath}: missing tensors for {string.Join(", ", missing.Take(6))}{(missing.Count > 6 ? $" (+{missing.Count - 6} more)" : "")}");
        if (selection.Count > 0) model.MarkSelected();
    }

    internal static JsonObject HyperJson(PeftModel model)
    {
        var o = new JsonObject();
        foreach (var t in model.Tuners.GroupBy(t => t.Method.Id).Select(g => g.First()))
            o[t.Method.Id] = t.Hypers.ToJson();
        return o;
    }

    internal static void WriteAtomically(string path, string text)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
