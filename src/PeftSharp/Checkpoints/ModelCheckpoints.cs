using System.Text.Json.Nodes;
using PeftSharp.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Checkpoints;

/// <summary>A model loaded from a checkpoint, with how it was matched.</summary>
public sealed record LoadedModel<TModel>(TModel Model, LoadReport Report, KeyConvention Convention, string ConfigSource);

/// <summary>Loading and saving whole models (ViT, CLIP) as safetensors, in any of the supported key conventions.</summary>
public static class ModelCheckpoints
{
    /// <summary>
    /// Loads a ViT. The architecture comes from <paramref name="config"/> when given, else from the checkpoint's
    /// "config" metadata (timm kwargs or an open_clip config), else from a Hugging Face config.json beside the file,
    /// else it is inferred from tensor shapes (heads = width / 64, the convention of every timm and CLIP ViT).
    /// A position embedding for another grid is resampled bicubically, as timm does; a head of another size is kept
    /// freshly initialised when <paramref name="config"/> asks for a different number of classes.
    /// </summary>
    /// <param name="adjust">Applied to the resolved config before the model is built (e.g. the task's number of
    /// classes, the training drop-path rate).</param>
    public static LoadedModel<VisionTransformer> LoadVit(string path, VitConfig? config = null, bool strict = true,
                                                         Func<VitConfig, VitConfig>? adjust = null)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        using var file = SafeTensorsFile.Open(path);
        var raw = new SafeTensorsSource(file);
        var convention = KeyMaps.Detect(raw.Keys);
        var source = KeyMaps.VitToTimm(raw, convention);
        string configSource;
        if (config != null) configSource = "given";
        else (config, configSource) = ResolveVitConfig(file, source, convention);
        if (adjust != null) config = adjust(config).Validate(path);

        var model = new VisionTransformer(config);
        var adapted = AdaptPositionEmbedding(source, model);
        bool headDiffers = source.Contains("head.weight") && config.NumClasses > 0 &&
                           source.Shape("head.weight")[0] != config.NumClasses;
        var report = StateDictLoader.Load(model, adapted,
            skip: headDiffers ? name => name.StartsWith("head.", StringComparison.Ordinal) : null);
        // Hugging Face's ViTModel adds a tanh pooler that timm's ViT does not have: reported, not loaded.
        var pooler = report.Unexpected.Where(k => convention == KeyConvention.HuggingFace && k.Contains("pooler.", StringComparison.Ordinal)).ToList();
        if (pooler.Count > 0)
            report = report with { Unexpected = report.Unexpected.Except(pooler).ToList(), Notes = report.Notes.Append($"ignored the Hugging Face pooler ({string.Join(", ", pooler)})").ToList() };
        if (adapted != source) report = report with { Notes = report.Notes.Append($"pos_embed resampled from {string.Join("x", source.Shape("pos_embed"))} to the model's grid").ToList() };
        if (strict)
            report.ThrowUnlessStrict(path, allowedMissing: name => headDiffers && name.StartsWith("head.", StringComparison.Ordinal)
                                                                  || convention == KeyConvention.OpenAiClipVisual && name == "head.weight" && !source.Contains("head.weight"));
        return new LoadedModel<VisionTransformer>(model, report, convention, configSource);
    }

    /// <summary>Metadata key naming the input normalisation preset the weights were trained with (timm keeps the
    /// same fact as mean/std in its pretrained_cfg).</summary>
    public const string NormalizationKey = "normalization";

    /// <summary>The normalisation preset recorded in a checkpoint's metadata, or null when it records none.</summary>
    public static string? ReadNormalization(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        using var file = SafeTensorsFile.Open(path);
        return file.Metadata.TryGetValue(NormalizationKey, out var name) ? name : null;
    }

    /// <summary>The architecture of a ViT checkpoint (metadata, config.json or shapes), without loading its weights.</summary>
    public static VitConfig ReadVitConfig(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        using var file = SafeTensorsFile.Open(path);
        var raw = new SafeTensorsSource(file);
        var convention = KeyMaps.Detect(raw.Keys);
        return ResolveVitConfig(file, KeyMaps.VitToTimm(raw, convention), convention).Item1;
    }

    /// <summary>The image model's architecture: a ViT checkpoint's, or a CLIP checkpoint's image tower (its 'config'
    /// metadata), without loading weights; what a precision probe times.</summary>
    public static VitConfig ReadImageTowerConfig(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        using (var file = SafeTensorsFile.Open(path))
            if (KeyMaps.Detect(new SafeTensorsSource(file).Keys) == KeyConvention.OpenClip)
                return file.Metadata.TryGetValue("config", out var json) ? ClipConfig.FromJson(json, $"{path} metadata 'config'").Vision
                    : throw new PeftSharpException($"{path}: no 'config' metadata in this CLIP checkpoint");
        return ReadVitConfig(path);
    }

    /// <summary>Loads a whole open_clip CLIP model (open_clip / OpenAI key names).</summary>
    public static LoadedModel<ClipModel> LoadClip(string path, ClipConfig? config = null, bool strict = true)
    {
        using var file = SafeTensorsFile.Open(path);
        var raw = new SafeTensorsSource(file);
        var convention = KeyMaps.Detect(raw.Keys);
        if (convention != KeyConvention.OpenClip)
            throw new PeftSharpException($"{path}: not a CLIP checkpoint (expected open_clip keys such as visual.conv1.weight and token_embedding.weight; detected {convention})");
        string configSource = "given";
        if (config == null)
        {
            if (!file.Metadata.TryGetValue("config", out var json))
                throw new PeftSharpException($"{path}: no CLIP config given and no 'config' metadata in the file (pass an open_clip model config JSON)");
            config = ClipConfig.FromJson(json, $"{path} metadata 'config'");
            configSource = "metadata";
        }
        var model = new ClipModel(config);
        var report = StateDictLoader.Load(model, KeyMaps.ClipToInternal(raw));
        if (strict) report.ThrowUnlessStrict(path);
        return new LoadedModel<ClipModel>(model, report, convention, configSource);
    }

    /// <summary>Saves a ViT with timm key names and its config as metadata (loads in timm as a plain state dict).</summary>
    public static void SaveVit(string path, VisionTransformer model, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { ["config"] = model.Config.ToJson(), ["format"] = "pt" };
        SafeTensors.Save(path, StateDictLoader.StateDict(model), meta);
    }

    /// <summary>Saves a CLIP model with open_clip key names and its config (default: the model's own) as metadata;
    /// <paramref name="half"/> stores float16, which loads back into float32.</summary>
    public static void SaveClip(string path, ClipModel model, string? configJson = null, IReadOnlyDictionary<string, string>? metadata = null,
                                bool half = false)
    {
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { ["format"] = "pt", ["config"] = configJson ?? model.Config.ToJson() };
        var state = KeyMaps.InternalToClip(StateDictLoader.StateDict(model));
        if (!half)
        {
            SafeTensors.Save(path, state, meta);
            return;
        }
        var halves = state.ToDictionary(kv => kv.Key, kv => kv.Value.to_type(ScalarType.Float16));
        try { SafeTensors.Save(path, halves, meta); }
        finally { foreach (var t in halves.Values) t.Dispose(); }
    }

    /// <summary>timm's resample_abs_pos_embed to a square grid (see <see cref="PositionEmbedding.Resample"/>).</summary>
    public static Tensor ResamplePositionEmbedding(Tensor posEmbed, int newGrid, int numPrefixTokens) =>
        PositionEmbedding.Resample(posEmbed, (newGrid, newGrid), numPrefixTokens);

    static ITensorSource AdaptPositionEmbedding(MappedSource source, VisionTransformer model)
    {
        if (!source.Contains("pos_embed")) return source;
        var have = source.Shape("pos_embed");
        var want = model.pos_embed.shape;
        if (have.SequenceEqual(want) || have.Length != 3 || have[2] != want[2]) return source;
        int prefix = model.Config.NoEmbedClass ? 0 : model.Config.NumPrefixTokens;
        var adapted = new MappedSource(source);
        foreach (var k in source.Keys.Where(k => k != "pos_embed")) adapted.Rename(k, k);
        adapted.Add("pos_embed", want, () =>
        {
            using var original = source.Read("pos_embed");
            return ResamplePositionEmbedding(original, model.Config.GridSize, prefix);
        }, "pos_embed");
        return adapted;
    }

    static (VitConfig, string) ResolveVitConfig(SafeTensorsFile file, MappedSource source, KeyConvention convention)
    {
        if (file.Metadata.TryGetValue("config", out var json))
        {
            string where = $"{file.Path} metadata 'config'";
            if (convention is KeyConvention.OpenAiClipVisual or KeyConvention.OpenClip)
                return (ClipConfig.FromJson(json, where).Vision, "metadata");
            return (VitConfig.FromJson(json, where), "metadata");
        }
        if (convention == KeyConvention.HuggingFace)
        {
            string hfConfig = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file.Path))!, "config.json");
            if (File.Exists(hfConfig)) return (FromHuggingFaceConfig(File.ReadAllText(hfConfig), hfConfig, source), "config.json");
            return (InferFromShapes(source, convention) with { NormEps = 1e-12 }, "inferred from shapes (Hugging Face eps 1e-12)");
        }
        return (InferFromShapes(source, convention), "inferred from shapes");
    }

    /// <summary>Hugging Face ViTConfig fields: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
    /// image_size, patch_size, num_channels, layer_norm_eps, qkv_bias, hidden_act, id2label.</summary>
    public static VitConfig FromHuggingFaceConfig(string json, string origin, ITensorSource? source = null)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new PeftSharpException($"{origin}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new PeftSharpException($"{origin}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        int Int(string key, int fallback) => o[key] is JsonValue v && v.TryGetValue(out int i) ? i : fallback;
        int hidden = Int("hidden_size", 768);
        string act = o["hidden_act"]?.GetValue<string>() ?? "gelu";
        if (act is not ("gelu" or "quick_gelu"))
            throw new PeftSharpException($"{origin}: hidden_act '{act}' is not supported (expected gelu or quick_gelu)");
        int classes = source?.Contains("head.weight") == true ? (int)source.Shape("head.weight")[0]
                    : o["id2label"] is JsonObject labels && source?.Contains("head.weight") == true ? labels.Count : 0;
        return new VitConfig
        {
            EmbedDim = hidden, Depth = Int("num_hidden_layers", 12), NumHeads = Int("num_attention_heads", 12),
            MlpRatio = (double)Int("intermediate_size", hidden * 4) / hidden, ImgSize = Int("image_size", 224),
            PatchSize = Int("patch_size", 16), InChans = Int("num_channels", 3),
            NormEps = o["layer_norm_eps"]?.GetValue<double>() ?? 1e-12, QkvBias = o["qkv_bias"]?.GetValue<bool>() ?? true,
            ActLayer = act, NumClasses = classes,
        }.Validate(origin);
    }

    /// <summary>Reads the architecture off the tensor shapes of a timm-named source.</summary>
    public static VitConfig InferFromShapes(ITensorSource s, KeyConvention convention)
    {
        if (!s.Contains("patch_embed.proj.weight"))
            throw new PeftSharpException("config", $"{s.Origin}: cannot infer the architecture (no patch embedding weight); give the model config or preset");
        var patch = s.Shape("patch_embed.proj.weight");
        int dim = (int)patch[0], inChans = (int)patch[1], patchSize = (int)patch[2];
        int depth = 0;
        while (s.Contains($"blocks.{depth}.norm1.weight")) depth++;
        bool cls = s.Contains("cls_token");
        int reg = s.Contains("reg_token") ? (int)s.Shape("reg_token")[1] : 0;
        int prefix = (cls ? 1 : 0) + reg;
        long positions = s.Contains("pos_embed") ? s.Shape("pos_embed")[1] : 0;
        bool noEmbedClass = false;
        int grid = (int)Math.Round(Math.Sqrt(positions - prefix));
        if (grid * grid != positions - prefix)
        {
            grid = (int)Math.Round(Math.Sqrt(positions));
            noEmbedClass = true;
            if (grid * grid != positions)
                throw new PeftSharpException($"{s.Origin}: pos_embed length {positions} is not a square grid (with or without {prefix} prefix tokens)");
        }
        bool clip = convention is KeyConvention.OpenAiClipVisual or KeyConvention.OpenClip;
        bool fcNorm = s.Contains("fc_norm.weight");
        return new VitConfig
        {
            ImgSize = grid * patchSize, PatchSize = patchSize, InChans = inChans, EmbedDim = dim, Depth = depth,
            NumHeads = Math.Max(1, dim / 64), ClassToken = cls, RegTokens = reg, NoEmbedClass = noEmbedClass,
            MlpRatio = depth > 0 ? (double)s.Shape("blocks.0.mlp.fc1.weight")[0] / dim : 4.0,
            QkvBias = depth == 0 || s.Contains("blocks.0.attn.qkv.bias"),
            NumClasses = s.Contains("head.weight") ? (int)s.Shape("head.weight")[0] : 0,
            HeadBias = s.Contains("head.bias") || !s.Contains("head.weight"),
            GlobalPool = fcNorm || !cls ? "avg" : "token", FcNorm = fcNorm,
            PreNorm = s.Contains("norm_pre.weight"), InitValues = s.Contains("blocks.0.ls1.gamma") ? 1e-5 : null,
            NormEps = clip ? 1e-5 : 1e-6,
            // OpenAI's CLIP weights were trained with QuickGELU; open_clip's own (LAION) weights state it in their config.
            ActLayer = clip ? "quick_gelu" : "gelu",
        }.Validate(s.Origin);
    }
}
