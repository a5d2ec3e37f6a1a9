using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Video;

/// <summary>
/// A video run's adapter as a folder in <see cref="AdapterFiles"/>' format (adapter_config.json +
/// adapter_model.safetensors), with what rebuilding the run's model and its test clips needs: the base (kind "video":
/// an image checkpoint inflated to T frames in tubelets, or a VideoMAE checkpoint; its path and SHA-256), the clip
/// sampling and transform, the normalisation, the class names and the test batch size. Evaluating the folder on the
/// run's test list therefore computes the run's test top-1.
/// </summary>
public static class VideoAdapter
{
    public const string Kind = "video";

    public static void Save(PeftModel peft, string directory, VideoBackbone backbone, VideoDataOptions data, IReadOnlyList<string> classNames, int evalBatchSize)
    {
        var model = peft.Root as VideoVisionTransformer ?? throw new ArgumentException("not a video model", nameof(peft));
        if (classNames.Count != model.Config.NumClasses)
            throw new PeftSharpException($"{directory}: {classNames.Count} class names for a head of {model.Config.NumClasses} classes");
        if (peft.IsMerged) throw new PeftSharpException("cannot save adapter files of a merged model; unmerge first");
        Directory.CreateDirectory(directory);
        var tensors = peft.TrainableParameters().ToDictionary(p => AdapterFiles.CanonicalName(p.Name), p => (Tensor)p.Parameter.detach().cpu());
        string checkpoint = File.Exists(backbone.Checkpoint) ? Path.GetFullPath(backbone.Checkpoint) : backbone.Checkpoint;
        var config = new JsonObject
        {
            ["format"] = "peftsharp-adapter",
            ["version"] = 1,
            ["method"] = peft.MethodSpec,
            ["hyper"] = AdapterFiles.HyperJson(peft),
            ["train_head"] = peft.Options.TrainHead,
            ["base_model"] = new JsonObject
            {
                ["kind"] = Kind,
                ["video"] = backbone.Inflate ? "inflated" : "videomae",
                ["frames"] = backbone.Frames,
                ["tubelet"] = backbone.Tubelet,
                ["config"] = JsonNode.Parse(model.Config.ToJson()),
                ["checkpoint"] = checkpoint,
                ["checkpoint_sha256"] = File.Exists(checkpoint) ? FileHashes.Sha256(checkpoint) : null,
            },
            ["num_classes"] = model.Config.NumClasses,
            ["class_names"] = new JsonArray(classNames.Select(n => (JsonNode)n).ToArray()),
            ["clips"] = ClipsJson(data),
            ["eval_batch_size"] = evalBatchSize,
        };
        AdapterFiles.WriteAtomically(Path.Combine(directory, AdapterFiles.ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        SafeTensors.Save(Path.Combine(directory, AdapterFiles.WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>The clip settings with the normalisation (part of what the model was trained to see).</summary>
    static JsonObject ClipsJson(VideoDataOptions data)
    {
        var o = data.ToJson();
        o["normalization"] = data.Transform.Normalization.Name;
        return o;
    }

    /// <summary>What a video adapter folder records (no tensor read); a missing or mistyped field is an error naming
    /// the file and the field.</summary>
    public sealed record Info(string Directory, string Method, IReadOnlyDictionary<string, string> Settings, bool TrainHead,
                              VideoBackbone Backbone, string? BaseSha256, VideoDataOptions Data, IReadOnlyList<string> ClassNames, int EvalBatchSize);

    public static Info ReadInfo(string directory)
    {
        var (config, configPath, _) = AdapterFiles.ReadConfig(directory);
        if (config["peft_type"] is not null) throw new PeftSharpException($"{configPath}: a Hugging Face peft adapter of an image model, not a video adapter");
        var (method, settings) = AdapterFiles.MethodOf(config, configPath, null);
        var baseModel = config["base_model"] as JsonObject ?? throw new PeftSharpException($"{configPath}: field 'base_model' must be an object");
        string where = $"{configPath} 'base_model'";
        string kind = JsonFields.OptionalString(baseModel, "kind", where) ?? "vit";
        if (kind != Kind) throw new PeftSharpException($"{configPath}: an adapter for a {kind.ToUpperInvariant()} model, not for a video model (field 'base_model.kind' is '{kind}')");
        string video = JsonFields.String(baseModel, "video", where);
        if (video is not ("inflated" or "videomae")) throw new PeftSharpException($"{where}: field 'video' must be 'inflated' or 'videomae', got '{video}'");
        var backbone = new VideoBackbone(JsonFields.String(baseModel, "checkpoint", where), video == "inflated",
                                         Positive(baseModel, "frames", where), Positive(baseModel, "tubelet", where));
        var classNames = JsonFields.OptionalStrings(config, "class_names", configPath) ?? throw new PeftSharpException($"{configPath}: missing field 'class_names'");
        int classes = JsonFields.Int(config, "num_classes", configPath);
        if (classNames.Count != classes) throw new PeftSharpException($"{configPath}: {classNames.Count} class_names for num_classes {classes}");
        var clips = config["clips"] as JsonObject ?? throw new PeftSharpException($"{configPath}: field 'clips' must be an object (sampling, frames, size, ...)");
        var data = ReadClips(clips, $"{configPath} 'clips'");
        if (data.Sampler.Frames != backbone.Frames)
            throw new PeftSharpException($"{configPath}: field 'clips.frames' is {data.Sampler.Frames}, the base model takes {backbone.Frames}");
        return new Info(directory, method, settings, JsonFields.OptionalBool(config, "train_head", configPath) ?? true, backbone,
                        JsonFields.OptionalString(baseModel, "checkpoint_sha256", where), data, classNames,
                        JsonFields.OptionalInt(config, "eval_batch_size", configPath) ?? 50);
    }

    static VideoDataOptions ReadClips(JsonObject o, string where)
    {
        var sampler = new ClipSampler(ClipSampler.ParseMode(JsonFields.String(o, "sampling", where)), Positive(o, "frames", where), Positive(o, "interval", where));
        var transform = new ClipTransform
        {
            Size = Positive(o, "size", where), ShortSide = Positive(o, "short_side", where),
            TestClips = Positive(o, "test_clips", where), TestCrops = Positive(o, "test_crops", where),
            Flip = JsonFields.OptionalBool(o, "flip", where) ?? false,
            Normalization = Normalization.FromName(JsonFields.String(o, "normalization", where)),
        };
        return new VideoDataOptions(sampler, transform);
    }

    static int Positive(JsonObject o, string field, string where)
    {
        int value = JsonFields.Int(o, field, where);
        return value > 0 ? value : throw new PeftSharpException($"{where}: field '{field}' must be a positive integer, got {value}");
    }

    /// <summary>Rebuilds the adapter's model: its base (the recorded checkpoint, or <paramref name="checkpoint"/>,
    /// whose SHA-256 must be the recorded one unless <paramref name="forceBase"/>), the method applied, the saved
    /// tensors loaded.</summary>
    public static (VideoVisionTransformer Model, PeftModel Peft, Info Info) Load(string directory, string? checkpoint = null, bool forceBase = false)
    {
        var info = ReadInfo(directory);
        string configPath = Path.Combine(directory, AdapterFiles.ConfigFile);
        string baseFile = checkpoint ?? info.Backbone.Checkpoint;
        if (!File.Exists(baseFile))
            throw new PeftSharpException(checkpoint is null
                ? $"{configPath}: the base checkpoint in field 'base_model.checkpoint' ({baseFile}) is not there; name the base checkpoint"
                : $"{baseFile}: checkpoint file not found");
        if (!forceBase && info.BaseSha256 is string recorded && FileHashes.Sha256(baseFile) is var actual && actual != recorded)
            throw new PeftSharpException($"{baseFile}: not the base this adapter was trained on ({configPath} field 'base_model.checkpoint_sha256' is {recorded[..Math.Min(12, recorded.Length)]}…, this file's SHA-256 is {actual[..12]}…); force it with force-base");
        var backbone = info.Backbone with { Checkpoint = baseFile, ImgSize = info.Data.Transform.Size };
        var model = backbone.Load(info.ClassNames.Count, 0);
        try
        {
            var peft = PeftModel.Create(model, info.Method, info.Settings, new PeftOptions { TrainHead = info.TrainHead });
            AdapterFiles.LoadInto(peft, directory);
            model.eval();
            return (model, peft, info with { Backbone = backbone });
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
