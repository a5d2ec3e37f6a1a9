using System.Text.Json;
using System.Text.Json.Nodes;

namespace PeftSharp.Models;

/// <summary>
/// The architecture of a <see cref="VisionTransformer"/>, named after timm's VisionTransformer constructor keyword
/// arguments so a timm config (or a checkpoint's "config" metadata) maps one to one. Extra fields that timm expresses
/// through layer factories (norm eps, activation, head bias) have their own names.
/// </summary>
public sealed record VitConfig
{
    public int ImgSize { get; init; } = 224;
    public int PatchSize { get; init; } = 16;
    public int InChans { get; init; } = 3;
    public int NumClasses { get; init; } = 1000;
    /// <summary>"token" (class token) or "avg" (mean of patch tokens).</summary>
    public string GlobalPool { get; init; } = "token";
    public int EmbedDim { get; init; } = 768;
    public int Depth { get; init; } = 12;
    public int NumHeads { get; init; } = 12;
    public double MlpRatio { get; init; } = 4.0;
    public bool QkvBias { get; init; } = true;
    /// <summary>Layer-scale init value; null disables layer scale (timm's init_values).</summary>
    public double? InitValues { get; init; }
    public bool ClassToken { get; init; } = true;
    public bool NoEmbedClass { get; init; }
    public int RegTokens { get; init; }
    /// <summary>A LayerNorm before the blocks (CLIP's ln_pre); as in timm it also removes the patch-embed bias.</summary>
    public bool PreNorm { get; init; }
    /// <summary>Norm after pooling instead of before it; null means timm's default (true for avg pooling).</summary>
    public bool? FcNorm { get; init; }
    public bool FinalNorm { get; init; } = true;
    public double DropRate { get; init; }
    public double PosDropRate { get; init; }
    public double ProjDropRate { get; init; }
    public double AttnDropRate { get; init; }
    public double DropPathRate { get; init; }
    /// <summary>LayerNorm epsilon: 1e-6 in timm, 1e-5 in CLIP, from config.json (often 1e-12) for Hugging Face.</summary>
    public double NormEps { get; init; } = 1e-6;
    /// <summary>"gelu" (exact, erf) or "quick_gelu" (x·sigmoid(1.702x), OpenAI CLIP).</summary>
    public string ActLayer { get; init; } = "gelu";
    public bool HeadBias { get; init; } = true;
    /// <summary>Accept images of any size (timm's dynamic_img_size): the position table is resampled to each input's
    /// patch grid on the fly, as timm does. Off, inputs must be img_size square.</summary>
    public bool DynamicImgSize { get; init; }

    public int GridSize => ImgSize / PatchSize;
    public int NumPatches => GridSize * GridSize;
    public int NumPrefixTokens => (ClassToken ? 1 : 0) + RegTokens;
    public bool UseFcNorm => FcNorm ?? GlobalPool == "avg";
    public int MlpHidden => (int)(EmbedDim * MlpRatio);

    /// <summary>Throws a <see cref="PeftSharpException"/> naming the first inconsistent field.</summary>
    public VitConfig Validate(string source = "config")
    {
        void Require(bool ok, string message)
        {
            if (!ok) throw new PeftSharpException($"{source}: {message}");
        }
        Require(ImgSize > 0 && PatchSize > 0, $"img_size and patch_size must be positive (got {ImgSize}, {PatchSize})");
        Require(ImgSize % PatchSize == 0, $"img_size {ImgSize} is not a multiple of patch_size {PatchSize}");
        Require(InChans > 0, $"in_chans must be positive (got {InChans})");
        Require(EmbedDim > 0 && Depth >= 0 && NumHeads > 0, "embed_dim, depth and num_heads must be positive");
        Require(EmbedDim % NumHeads == 0, $"embed_dim {EmbedDim} is not divisible by num_heads {NumHeads}");
        Require(NumClasses >= 0, $"num_classes must be >= 0 (got {NumClasses})");
        Require(GlobalPool is "token" or "avg", $"global_pool must be 'token' or 'avg' (got '{GlobalPool}')");
        Require(GlobalPool != "token" || ClassToken, "global_pool 'token' needs class_token=true");
        Require(ActLayer is "gelu" or "quick_gelu", $"act_layer must be 'gelu' or 'quick_gelu' (got '{ActLayer}')");
        Require(MlpRatio > 0 && NormEps > 0, "mlp_ratio and norm_eps must be positive");
        Require(RegTokens >= 0, "reg_tokens must be >= 0");
        foreach (var (name, rate) in new[] { ("drop_rate", DropRate), ("pos_drop_rate", PosDropRate),
                     ("proj_drop_rate", ProjDropRate), ("attn_drop_rate", AttnDropRate), ("drop_path_rate", DropPathRate) })
            Require(rate >= 0 && rate < 1, $"{name} must be in [0, 1) (got {rate})");
        return this;
    }

    // ---- timm keyword arguments as JSON ----

    static readonly string[] IgnoredTimmKeys = { "weight_init", "dynamic_img_pad", "pretrained_cfg" };

    /// <summary>Parses timm constructor kwargs as JSON (unknown keys are errors, so typos are caught).</summary>
    public static VitConfig FromJson(string json, string source = "config", VitConfig? baseConfig = null)
    {
        JsonObject obj;
        try
        {
            obj = JsonNode.Parse(json) as JsonObject
                  ?? throw new PeftSharpException($"{source}: expected a JSON object of timm VisionTransformer kwargs");
        }
        catch (JsonException e)
        {
            throw new PeftSharpException($"{source}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
        var c = baseConfig ?? new VitConfig();
        foreach (var (key, node) in obj)
        {
            string where = $"{source}: field '{key}'";
            c = key switch
            {
                "img_size" => c with { ImgSize = SquareInt(node, where) },
                "patch_size" => c with { PatchSize = SquareInt(node, where) },
                "in_chans" => c with { InChans = Int(node, where) },
                "num_classes" => c with { NumClasses = Int(node, where) },
                "global_pool" => c with { GlobalPool = Str(node, where) },
                "embed_dim" => c with { EmbedDim = Int(node, where) },
                "depth" => c with { Depth = Int(node, where) },
                "num_heads" => c with { NumHeads = Int(node, where) },
                "mlp_ratio" => c with { MlpRatio = Num(node, where) },
                "qkv_bias" => c with { QkvBias = Bool(node, where) },
                "init_values" => c with { InitValues = node is null ? null : Num(node, where) },
                "class_token" => c with { ClassToken = Bool(node, where) },
                "no_embed_class" => c with { NoEmbedClass = Bool(node, where) },
                "reg_tokens" => c with { RegTokens = Int(node, where) },
                "pre_norm" => c with { PreNorm = Bool(node, where) },
                "fc_norm" => c with { FcNorm = node is null ? null : Bool(node, where) },
                "final_norm" => c with { FinalNorm = Bool(node, where) },
                "drop_rate" => c with { DropRate = Num(node, where) },
                "pos_drop_rate" => c with { PosDropRate = Num(node, where) },
                "proj_drop_rate" => c with { ProjDropRate = Num(node, where) },
                "attn_drop_rate" => c with { AttnDropRate = Num(node, where) },
                "drop_path_rate" => c with { DropPathRate = Num(node, where) },
                "norm_eps" => c with { NormEps = Num(node, where) },
                "act_layer" => c with { ActLayer = Str(node, where) },
                "head_bias" => c with { HeadBias = Bool(node, where) },
                "dynamic_img_size" => c with { DynamicImgSize = Bool(node, where) },
                _ when IgnoredTimmKeys.Contains(key) => c,
                _ => throw new PeftSharpException(
                    $"{source}: unknown field '{key}' (expected timm VisionTransformer kwargs such as img_size, patch_size, embed_dim, depth, num_heads, num_classes, global_pool, qkv_bias, class_token, fc_norm, mlp_ratio)"),
            };
        }
        return c.Validate(source);
    }

    /// <summary>
    /// A config from an optional preset name and optional timm kwargs (inline JSON or the path of a JSON file),
    /// the kwargs overriding the preset; null when neither is given.
    /// </summary>
    public static VitConfig? Resolve(string? preset, string? jsonOrPath)
    {
        var config = preset != null ? VitPresets.Get(preset) : null;
        if (jsonOrPath == null) return config;
        string text = jsonOrPath, source = "model config";
        if (!jsonOrPath.TrimStart().StartsWith('{'))
        {
            if (!File.Exists(jsonOrPath))
                throw new PeftSharpException("config", $"model config '{jsonOrPath}' is neither inline JSON nor an existing file");
            text = File.ReadAllText(jsonOrPath);
            source = jsonOrPath;
        }
        return FromJson(text, source, config);
    }

    /// <summary>The timm kwargs of this config, as written into checkpoint metadata.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["img_size"] = ImgSize, ["patch_size"] = PatchSize, ["in_chans"] = InChans, ["num_classes"] = NumClasses,
            ["global_pool"] = GlobalPool, ["embed_dim"] = EmbedDim, ["depth"] = Depth, ["num_heads"] = NumHeads,
            ["mlp_ratio"] = MlpRatio, ["qkv_bias"] = QkvBias, ["class_token"] = ClassToken,
            ["no_embed_class"] = NoEmbedClass, ["reg_tokens"] = RegTokens, ["pre_norm"] = PreNorm,
            ["fc_norm"] = FcNorm, ["final_norm"] = FinalNorm, ["init_values"] = InitValues,
            ["drop_rate"] = DropRate, ["pos_drop_rate"] = PosDropRate, ["proj_drop_rate"] = ProjDropRate,
            ["attn_drop_rate"] = AttnDropRate, ["drop_path_rate"] = DropPathRate,
            ["norm_eps"] = NormEps, ["act_layer"] = ActLayer, ["head_bias"] = HeadBias,
        };
        // Only when on: it changes no weight, and configs written before it existed keep their text (and run keys).
        if (DynamicImgSize) o["dynamic_img_size"] = true;
        return o.ToJsonString();
    }

    static int Int(JsonNode? n, string where) =>
        n is JsonValue v && v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue
            ? (int)d : throw new PeftSharpException($"{where}: expected an integer, got {n?.ToJsonString() ?? "null"}");

    static int SquareInt(JsonNode? n, string where)
    {
        if (n is JsonArray a)
        {
            if (a.Count == 2 && Int(a[0], where) == Int(a[1], where)) return Int(a[0], where);
            throw new PeftSharpException($"{where}: only square sizes are supported, got {a.ToJsonString()}");
        }
        return Int(n, where);
    }

    static double Num(JsonNode? n, string where) =>
        n is JsonValue v && v.TryGetValue(out double d)
            ? d : throw new PeftSharpException($"{where}: expected a number, got {n?.ToJsonString() ?? "null"}");

    static bool Bool(JsonNode? n, string where) =>
        n is JsonValue v && v.TryGetValue(out bool b)
            ? b : throw new PeftSharpException($"{where}: expected true or false, got {n?.ToJsonString() ?? "null"}");

    static string Str(JsonNode? n, string where) =>
        n is JsonValue v && v.TryGetValue(out string? s) && s != null
            ? s : throw new PeftSharpException($"{where}: expected a string, got {n?.ToJsonString() ?? "null"}");
}

/// <summary>The timm architectures people use, by timm's model names.</summary>
public static class VitPresets
{
    static VitConfig Vit(int dim, int depth, int heads, int patch, int img = 224) =>
        new() { EmbedDim = dim, Depth = depth, NumHeads = heads, PatchSize = patch, ImgSize = img };

    public static readonly IReadOnlyDictionary<string, VitConfig> All = new Dictionary<string, VitConfig>
    {
        ["vit_tiny_patch16_224"] = Vit(192, 12, 3, 16),
        ["vit_small_patch16_224"] = Vit(384, 12, 6, 16),
        ["vit_small_patch32_224"] = Vit(384, 12, 6, 32),
        ["vit_base_patch16_224"] = Vit(768, 12, 12, 16),
        ["vit_base_patch32_224"] = Vit(768, 12, 12, 32),
        ["vit_large_patch16_224"] = Vit(1024, 24, 16, 16),
        ["vit_large_patch32_224"] = Vit(1024, 24, 16, 32),
        // The study's backbone: ViT-B/16 pretrained on ImageNet-21k (timm's name for the 21k-pretrained weights).
        ["vit_base_patch16_224_in21k"] = Vit(768, 12, 12, 16) with { NumClasses = 21843 },
        // CLIP image towers as timm builds them (pre-norm, no patch bias, QuickGELU for OpenAI weights).
        ["vit_base_patch16_clip_224"] = Vit(768, 12, 12, 16) with { PreNorm = true, NormEps = 1e-5, NumClasses = 512, HeadBias = false, ActLayer = "quick_gelu" },
        ["vit_base_patch32_clip_224"] = Vit(768, 12, 12, 32) with { PreNorm = true, NormEps = 1e-5, NumClasses = 512, HeadBias = false, ActLayer = "quick_gelu" },
        // Sized for a 2-core CPU: ViT-Tiny width at 32 px with 4-px patches (the perf benchmark's default shape).
        ["vit_tiny_patch4_32"] = Vit(192, 12, 3, 4, 32),
    };

    public static VitConfig Get(string name) =>
        All.TryGetValue(name, out var c)
            ? c
            : throw new PeftSharpException($"unknown model preset '{name}' (known: {string.Join(", ", All.Keys)})");
}
