using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Dense;

/// <summary>What a dense adapter folder says about its model: the task family, the head, the input it expects (size and
/// normalisation; images are resized bilinearly to a square, labels by nearest neighbour) and the class names.</summary>
public sealed record DenseAdapterInfo(string Directory, DenseKind Kind, string Head, int ImageSize, Normalization Normalization,
                                      IReadOnlyList<string> ClassNames)
{
    public string Family => Kind == DenseKind.Segmentation ? "dense-seg" : "dense-det";
}

/// <summary>
/// A trained dense model as files: the backbone method's adapter files (<see cref="AdapterFiles"/>: the method, its
/// hyperparameters, the base checkpoint with its SHA-256, the method's tensors), the head's tensors
/// (dense_head.safetensors, state-dict names of <see cref="DenseModel.decode_head"/>) and dense_config.json (family,
/// head, input size, normalisation, class names). Loading rebuilds exactly the model that was evaluated when it was
/// trained, so evaluating it again gives the same numbers.
/// </summary>
public static class DenseAdapter
{
    public const string ConfigFile = "dense_config.json", HeadFile = "dense_head.safetensors", Format = "peftsharp-dense";
    /// <summary>The resize rule of <see cref="DenseImages"/> (named, so a file from a future rule is refused).</summary>
    public const string ResizeRule = "squash-bilinear";

    public static void Save(DenseModel model, PeftModel peft, string directory, string? baseCheckpoint, string head, int imageSize,
                            Normalization normalization, IReadOnlyList<string> classNames)
    {
        if (classNames.Count != model.NumClasses)
            throw new PeftSharpException($"{directory}: {classNames.Count} class names for a head of {model.NumClasses} classes");
        AdapterFiles.Save(peft, directory, baseCheckpoint);
        var tensors = model.decode_head.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu());
        SafeTensors.Save(Path.Combine(directory, HeadFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var config = new JsonObject
        {
            ["format"] = Format, ["version"] = 1,
            ["family"] = model.Kind == DenseKind.Segmentation ? "dense-seg" : "dense-det",
            ["head"] = head,
            ["preprocessing"] = new JsonObject { ["image_size"] = imageSize, ["resize"] = ResizeRule, ["normalization"] = normalization.Name },
            ["class_names"] = new JsonArray(classNames.Select(n => (JsonNode)n).ToArray()),
        };
        File.WriteAllText(Path.Combine(directory, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>True when <paramref name="directory"/> holds a dense adapter's config.</summary>
    public static bool Looks(string directory) => File.Exists(Path.Combine(directory, ConfigFile));

    /// <summary>Reads dense_config.json; a missing or wrong field is named with the file.</summary>
    public static DenseAdapterInfo ReadInfo(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new PeftSharpException($"{directory}: not a dense adapter ({ConfigFile} missing); a classification adapter is evaluated on an image-classification task");
        JsonObject config;
        try { config = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new PeftSharpException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new PeftSharpException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        if (JsonFields.OptionalString(config, "format", path) != Format) throw new PeftSharpException($"{path}: field 'format' must be '{Format}'");
        var kind = JsonFields.String(config, "family", path) switch
        {
            "dense-seg" => DenseKind.Segmentation,
            "dense-det" => DenseKind.Detection,
            var other => throw new PeftSharpException($"{path}: field 'family' is '{other}', expected dense-seg or dense-det"),
        };
        string head = JsonFields.String(config, "head", path);
        if (kind == DenseKind.Segmentation ? head is not ("uper" or "linear") : head != "fcos")
            throw new PeftSharpException($"{path}: field 'head' is '{head}', expected {(kind == DenseKind.Segmentation ? "uper or linear" : "fcos")}");
        string where = $"{path} 'preprocessing'";
        var pre = config["preprocessing"] as JsonObject ?? throw new PeftSharpException($"{where}: expected an object with image_size, resize and normalization");
        int size = JsonFields.Int(pre, "image_size", where);
        if (size <= 0) throw new PeftSharpException($"{where}.image_size: expected a positive integer, got {size}");
        string resize = JsonFields.String(pre, "resize", where);
        if (resize != ResizeRule) throw new PeftSharpException($"{where}.resize: '{resize}' is not a resize rule this version implements (expected '{ResizeRule}')");
        var classes = JsonFields.OptionalStrings(config, "class_names", path) ?? throw new PeftSharpException($"{path}: missing field 'class_names'");
        return new DenseAdapterInfo(directory, kind, head, size, Normalization.FromName(JsonFields.String(pre, "normalization", where)), classes);
    }

    /// <summary>Rebuilds the trained model: the base backbone at the adapter's input size, the method with its saved
    /// tensors, the head with its. <paramref name="checkpoint"/> overrides the recorded base; a base whose content
    /// differs from the one the adapter was trained on is refused unless <paramref name="forceBase"/>.</summary>
    public static (DenseModel Model, PeftModel Peft, DenseAdapterInfo Info) Load(string directory, string? checkpoint = null, bool forceBase = false)
    {
        var info = ReadInfo(directory);
        var adapter = AdapterFiles.ReadInfo(directory);
        string configPath = Path.Combine(directory, AdapterFiles.ConfigFile);
        string baseFile = checkpoint ?? (adapter.BaseCheckpoint is string recorded && File.Exists(recorded) ? recorded : ShippedModels.RequireDefaultVit());
        if (!File.Exists(baseFile)) throw new PeftSharpException("checkpoint", $"{baseFile}: backbone checkpoint not found");
        if (!forceBase && adapter.BaseSha256 is string sha && FileHashes.Sha256(baseFile) != sha)
            throw new PeftSharpException($"{configPath}: the adapter was trained on another base ({adapter.BaseCheckpoint}, sha256 {sha[..12]}…), not {baseFile}; force it with force_base");
        var backbone = LoadBackbone(null, null, baseFile, info.ImageSize, 0);
        var model = new DenseModel(backbone, info.Kind, info.ClassNames.Count, info.Kind == DenseKind.Segmentation ? info.Head : "uper");
        try
        {
            var (method, settings) = AdapterFiles.ReadMethod(directory);
            var peft = PeftModel.Create(backbone, method, settings);
            AdapterFiles.LoadInto(peft, directory);
            LoadHead(model, Path.Combine(directory, HeadFile));
            model.eval();
            return (model, peft, info);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    static void LoadHead(DenseModel model, string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: the head's weights are missing");
        using var file = SafeTensorsFile.Open(path);
        using var _ = no_grad();
        foreach (var (name, tensor) in model.decode_head.state_dict())
        {
            if (!file.Contains(name)) throw new PeftSharpException($"{path}: no tensor '{name}'; the head was saved for another head or backbone");
            using var value = file.ReadTensor(name);
            if (!value.shape.SequenceEqual(tensor.shape))
                throw new PeftSharpException($"{path}: '{name}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", tensor.shape)}]");
            tensor.copy_(value);
        }
    }

    /// <summary>A backbone for dense work: the checkpoint (or preset/config) at <paramref name="imageSize"/> (the
    /// position table resampled as timm does), without a classifier, with the given stochastic depth.</summary>
    public static VisionTransformer LoadBackbone(string? preset, string? configJson, string? checkpoint, int imageSize, double dropPath)
    {
        var config = VitConfig.Resolve(preset, configJson)
                     ?? (checkpoint != null ? ModelCheckpoints.ReadVitConfig(checkpoint) : throw new PeftSharpException("checkpoint", "no backbone: give a model preset, a config and/or a checkpoint"));
        if (imageSize % config.PatchSize != 0)
            throw new PeftSharpException("image_size", $"dense input size {imageSize} is not a multiple of the backbone's patch size {config.PatchSize}");
        config = config with { ImgSize = imageSize, NumClasses = 0, DropPathRate = dropPath };
        if (checkpoint == null) return new VisionTransformer(config);
        var loaded = ModelCheckpoints.LoadVit(checkpoint, config, strict: false);
        if (loaded.Report.Missing.Count > 0 || loaded.Report.ShapeMismatches.Count > 0)
            throw new PeftSharpException($"{checkpoint}: not a backbone for this config ({loaded.Report.Describe()})");
        return loaded.Model;
    }
}
