using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Inference;

/// <summary>Which trained classifier to load: a checkpoint (a merged model, or the base of an adapter; the shipped
/// backbone when none is named), optionally with adapter files on it.</summary>
public sealed record ClassifierSource
{
    /// <summary>A safetensors checkpoint; null: the adapter's recorded base if that file is there, else the shipped backbone.</summary>
    public string? Checkpoint { get; init; }
    /// <summary>An adapter folder (ours or Hugging Face peft's LoRA).</summary>
    public string? Adapter { get; init; }
    /// <summary>Architecture overrides, as for training (a preset name, timm kwargs as JSON).</summary>
    public string? Preset { get; init; }
    public string? ConfigJson { get; init; }
    /// <summary>A normalisation preset the caller asks for: it must agree with what the model records.</summary>
    public string? Normalization { get; init; }
    /// <summary>Apply the adapter even to a base checkpoint whose SHA-256 differs from the one it was trained on.</summary>
    public bool ForceBase { get; init; }
}

/// <summary>
/// A trained classifier ready to evaluate or predict: the model (with its adapter applied, or merged), the
/// preprocessing it was trained with and its class names, each taken from what the files record — so evaluating a
/// saved model computes exactly what its training run computed.
/// </summary>
public sealed class Classifier : IImageClassifier, IDisposable
{
    Classifier(VisionTransformer model, PeftModel? peft, Preprocessing preprocessing, IReadOnlyList<string>? classNames,
               string checkpoint, string? adapter, string preprocessingSource)
    {
        Model = model;
        Peft = peft;
        Preprocessing = preprocessing;
        ClassNames = classNames;
        Checkpoint = checkpoint;
        Adapter = adapter;
        PreprocessingSource = preprocessingSource;
    }

    public VisionTransformer Model { get; }
    /// <summary>The applied adapter, null without one or after <see cref="MergeAndUnload"/>.</summary>
    public PeftModel? Peft { get; private set; }
    public Preprocessing Preprocessing { get; }
    /// <summary>Where <see cref="Preprocessing"/> came from ("adapter_config.json", "checkpoint metadata", "default").</summary>
    public string PreprocessingSource { get; }
    public IReadOnlyList<string>? ClassNames { get; }
    public string Checkpoint { get; }
    public string? Adapter { get; }
    /// <summary>The adapter's method spec ("lora", "ssf+lora"), or "none".</summary>
    public string Method { get; private set; } = "none";
    public int NumClasses => Model.Config.NumClasses;

    public string ClassName(int label) =>
        ClassNames is { } names && label >= 0 && label < names.Count ? names[label] : label.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Loads what <paramref name="source"/> names; a mismatch between the files (an adapter on another base,
    /// a normalisation that disagrees with the recorded one) is a <see cref="PeftSharpException"/>, never a silent change.</summary>
    public static Classifier Load(ClassifierSource source)
    {
        var info = source.Adapter == null ? null : AdapterFiles.ReadInfo(source.Adapter);
        string checkpoint = ResolveCheckpoint(source, info);
        var config = VitConfig.Resolve(source.Preset, source.ConfigJson);
        var model = ModelCheckpoints.LoadVit(checkpoint, config).Model;
        try
        {
            PeftModel? peft = source.Adapter == null ? null : AdapterFiles.Load(model, source.Adapter);
            var (preprocessing, from) = ResolvePreprocessing(source, info, checkpoint, model.Config.ImgSize);
            var classNames = info?.ClassNames ?? ReadClassNames(checkpoint);
            if (classNames != null && classNames.Count != model.Config.NumClasses)
                throw new PeftSharpException($"{from}: {classNames.Count} class names for a head of {model.Config.NumClasses} classes");
            model.eval();
            return new Classifier(model, peft, preprocessing, classNames, checkpoint, source.Adapter, from) { Method = peft?.MethodSpec ?? "none" };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    static string ResolveCheckpoint(ClassifierSource source, AdapterFiles.AdapterInfo? info)
    {
        string path = source.Checkpoint
            ?? (info?.BaseCheckpoint is string recorded && File.Exists(recorded) ? recorded : ShippedModels.RequireDefaultVit());
        if (info?.BaseSha256 is string expected && !source.ForceBase)
        {
            string actual = FileHashes.Sha256(path);
            if (actual != expected)
                throw new PeftSharpException(
                    $"{Path.Combine(info.Directory, AdapterFiles.ConfigFile)}: the adapter was trained on {Path.GetFileName(info.BaseCheckpoint)} (sha256 {expected[..12]}…), " +
                    $"not on {path} (sha256 {actual[..12]}…); give the base it was trained on, or force the base to apply it anyway");
        }
        return path;
    }

    static (Preprocessing, string) ResolvePreprocessing(ClassifierSource source, AdapterFiles.AdapterInfo? info, string checkpoint, int imageSize)
    {
        (Preprocessing? recorded, string from) = info?.Preprocessing is { } p
            ? (p, Path.Combine(info.Directory, AdapterFiles.ConfigFile))
            : (ReadPreprocessing(checkpoint, imageSize), $"{checkpoint} metadata");
        var asked = source.Normalization == null ? null : Normalization.FromName(source.Normalization);
        if (recorded == null)
            return (new Preprocessing(imageSize, asked ?? Normalization.None), asked == null ? "default (nothing recorded)" : "given");
        if (asked != null && asked.Name != recorded.Normalization.Name)
            throw new PeftSharpException($"{from}: the model was trained with {recorded.Normalization.Name} normalisation, not {asked.Name}; leave the normalisation out to use the recorded one");
        if (recorded.ImageSize != imageSize)
            throw new PeftSharpException($"{from}: preprocessing.image_size {recorded.ImageSize} differs from the model's img_size {imageSize}");
        return (recorded, from);
    }

    /// <summary>A checkpoint's recorded preprocessing: the "preprocessing" metadata of a merged model, else its
    /// "normalization" preset at the model's size, else null.</summary>
    public static Preprocessing? ReadPreprocessing(string checkpoint, int imageSize)
    {
        var metadata = ReadMetadata(checkpoint);
        if (metadata.TryGetValue(Preprocessing.MetadataKey, out var json))
            return Preprocessing.FromJson(ParseJson(json, $"{checkpoint} metadata '{Preprocessing.MetadataKey}'"), $"{checkpoint} metadata '{Preprocessing.MetadataKey}'");
        return metadata.TryGetValue(ModelCheckpoints.NormalizationKey, out var name) ? new Preprocessing(imageSize, Normalization.FromName(name)) : null;
    }

    /// <summary>Metadata key of a merged checkpoint's class names (a JSON array of strings).</summary>
    public const string ClassNamesKey = "class_names";

    static IReadOnlyList<string>? ReadClassNames(string checkpoint)
    {
        if (!ReadMetadata(checkpoint).TryGetValue(ClassNamesKey, out var json)) return null;
        string where = $"{checkpoint} metadata '{ClassNamesKey}'";
        return ParseJson(json, where) is JsonArray a && a.All(e => e is JsonValue v && v.TryGetValue(out string? _))
            ? a.Select(e => e!.GetValue<string>()).ToList()
            : throw new PeftSharpException($"{where}: expected a JSON array of strings");
    }

    static IReadOnlyDictionary<string, string> ReadMetadata(string checkpoint)
    {
        using var file = SafeTensorsFile.Open(checkpoint);
        return new Dictionary<string, string>(file.Metadata);
    }

    static JsonNode? ParseJson(string json, string where)
    {
        try { return JsonNode.Parse(json); }
        catch (JsonException e) { throw new PeftSharpException($"{where}: invalid JSON ({e.Message.Split('\n')[0]})"); }
    }

    /// <summary>Logits of preprocessed images on the model's device (the caller chooses inference mode).</summary>
    public TorchSharp.torch.Tensor Logits(TorchSharp.torch.Tensor images)
    {
        Model.eval();
        return Model.forward(images.to(Model.pos_embed.device));
    }

    /// <summary>An evaluation loader of <paramref name="data"/> with this model's preprocessing.</summary>
    public DataLoader Loader(ImageDataset data, int batchSize = 64) => Preprocessing.Loader(data, batchSize);

    /// <summary>Folds the adapter into the weights and removes its modules (mergeable methods; others are refused
    /// with the reason). Afterwards the model has exactly timm's modules.</summary>
    public void MergeAndUnload()
    {
        if (Peft == null) return;
        Peft.MergeAndUnload();
        Peft = null;
    }

    /// <summary>Saves the (merged) model as a plain timm-keyed checkpoint that records its preprocessing and class
    /// names, so that evaluating or predicting with it needs nothing else.</summary>
    public void SaveMerged(string path)
    {
        if (Peft != null) throw new InvalidOperationException("merge the adapter before saving a plain checkpoint");
        var metadata = Metadata();
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder != null) Directory.CreateDirectory(folder);
        string tmp = path + ".tmp";
        ModelCheckpoints.SaveVit(tmp, Model, metadata);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>What a saved model records about itself: preprocessing, class names and, merged, what it came from.</summary>
    public Dictionary<string, string> Metadata()
    {
        var metadata = new Dictionary<string, string>
        {
            [Preprocessing.MetadataKey] = Preprocessing.ToJson().ToJsonString(),
            [ModelCheckpoints.NormalizationKey] = Preprocessing.Normalization.Name,
        };
        if (ClassNames != null) metadata[ClassNamesKey] = new JsonArray(ClassNames.Select(n => (JsonNode)n).ToArray()).ToJsonString();
        if (Adapter != null) metadata["merged_from"] = $"{Method} adapter on {Path.GetFileName(Checkpoint)} sha256:{FileHashes.Sha256(Checkpoint)}";
        return metadata;
    }

    /// <summary>What makes two evaluations of this classifier the same (<see cref="Training.RunSpecs.Evaluation"/>):
    /// the adapter's content, merging, preprocessing, precision and the images.</summary>
    public JsonObject EvaluationIdentity(bool merged, Precision precision, ImageDataset data, ImageTask task)
    {
        var o = new JsonObject
        {
            ["adapter"] = Adapter == null ? null : Path.GetFullPath(Adapter),
            ["adapter_sha256"] = Adapter == null ? null : FileHashes.Sha256(Path.Combine(Adapter, AdapterFiles.WeightsFile)),
            ["merged"] = merged, ["preprocessing"] = Preprocessing.ToJson(),
            ["data"] = new JsonObject { ["eval"] = ImageTask.Fingerprint(data, task.Directory) },
        };
        if (precision != Precision.Float32) o["precision"] = Interop.Autocast.Name(precision);
        return o;
    }

    public void Dispose() => Model.Dispose();
}
