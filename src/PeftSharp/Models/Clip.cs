// CLIP as open_clip builds it (open_clip 3.x model.py / transformer.py): an image tower that is a pre-norm ViT
// (conv1 without bias, class_embedding, ln_pre, ln_post on all tokens, token pooling, x @ proj) and a causal text
// transformer (token + position embedding, causal mask, ln_final, the end-of-text position, @ text_projection).
// Both towers reuse the ViT's Block, so every tuner applies to them; checkpoints keep open_clip key names on disk
// (Checkpoints/ClipKeys.cs maps them).
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Models;

public sealed record ClipTextConfig
{
    public int ContextLength { get; init; } = 77;
    public int VocabSize { get; init; } = 49408;
    public int Width { get; init; } = 512;
    public int Heads { get; init; } = 8;
    public int Layers { get; init; } = 12;
    public double MlpRatio { get; init; } = 4.0;
}

/// <summary>open_clip's CLIP config: embed_dim, quick_gelu, vision_cfg, text_cfg (the keys of its model JSON).</summary>
public sealed record ClipConfig
{
    public int EmbedDim { get; init; } = 512;
    public bool QuickGelu { get; init; }
    public VitConfig Vision { get; init; } = new();
    public ClipTextConfig Text { get; init; } = new();

    /// <summary>The image tower of an open_clip vision_cfg as a timm-layout ViT.</summary>
    public static VitConfig VisionTower(int imageSize, int patchSize, int width, int layers, int headWidth,
                                        double mlpRatio, int embedDim, bool quickGelu) => new()
    {
        ImgSize = imageSize, PatchSize = patchSize, EmbedDim = width, Depth = layers, NumHeads = width / headWidth,
        MlpRatio = mlpRatio, NumClasses = embedDim, HeadBias = false, PreNorm = true, NormEps = 1e-5,
        ActLayer = quickGelu ? "quick_gelu" : "gelu", GlobalPool = "token",
    };

    public static ClipConfig FromJson(string json, string source = "clip config")
    {
        JsonObject root;
        try { root = JsonNode.Parse(json) as JsonObject ?? throw new PeftSharpException($"{source}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new PeftSharpException($"{source}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        int embed = GetInt(root, "embed_dim", 512, source);
        bool quick = root["quick_gelu"]?.GetValue<bool>() ?? false;
        var v = root["vision_cfg"] as JsonObject ?? throw new PeftSharpException($"{source}: missing object 'vision_cfg'");
        var t = root["text_cfg"] as JsonObject ?? throw new PeftSharpException($"{source}: missing object 'text_cfg'");
        int width = GetInt(v, "width", 768, source + ".vision_cfg");
        var vision = VisionTower(GetInt(v, "image_size", 224, source + ".vision_cfg"), GetInt(v, "patch_size", 16, source + ".vision_cfg"),
            width, GetInt(v, "layers", 12, source + ".vision_cfg"), GetInt(v, "head_width", 64, source + ".vision_cfg"),
            v["mlp_ratio"]?.GetValue<double>() ?? 4.0, embed, quick);
        var text = new ClipTextConfig
        {
            ContextLength = GetInt(t, "context_length", 77, source + ".text_cfg"),
            VocabSize = GetInt(t, "vocab_size", 49408, source + ".text_cfg"),
            Width = GetInt(t, "width", 512, source + ".text_cfg"),
            Heads = GetInt(t, "heads", 8, source + ".text_cfg"),
            Layers = GetInt(t, "layers", 12, source + ".text_cfg"),
            MlpRatio = t["mlp_ratio"]?.GetValue<double>() ?? 4.0,
        };
        if (text.Width % text.Heads != 0)
            throw new PeftSharpException($"{source}.text_cfg: width {text.Width} is not divisible by heads {text.Heads}");
        return new ClipConfig { EmbedDim = embed, QuickGelu = quick, Vision = vision.Validate(source + ".vision_cfg"), Text = text };
    }

    /// <summary>The config as open_clip's model JSON (what <see cref="FromJson"/> reads; stored in checkpoints).</summary>
    public string ToJson() => new JsonObject
    {
        ["embed_dim"] = EmbedDim, ["quick_gelu"] = QuickGelu,
        ["vision_cfg"] = new JsonObject
        {
            ["image_size"] = Vision.ImgSize, ["patch_size"] = Vision.PatchSize, ["width"] = Vision.EmbedDim, ["layers"] = Vision.Depth,
            ["head_width"] = Vision.EmbedDim / Vision.NumHeads, ["mlp_ratio"] = Vision.MlpRatio,
        },
        ["text_cfg"] = new JsonObject
        {
            ["context_length"] = Text.ContextLength, ["vocab_size"] = Text.VocabSize, ["width"] = Text.Width, ["heads"] = Text.Heads,
            ["layers"] = Text.Layers, ["mlp_ratio"] = Text.MlpRatio,
        },
    }.ToJsonString();

    static int GetInt(JsonObject o, string key, int fallback, string source)
    {
        var node = o[key];
        if (node is null) return fallback;
        try { return node.GetValue<int>(); }
        catch (Exception) { throw new PeftSharpException($"{source}: field '{key}' must be an integer, got {node.ToJsonString()}"); }
    }

    /// <summary>open_clip ViT-B-16 (OpenAI weights use QuickGELU).</summary>
    public static ClipConfig VitB16(bool quickGelu = true) => new()
    {
        EmbedDim = 512, QuickGelu = quickGelu,
        Vision = VisionTower(224, 16, 768, 12, 64, 4.0, 512, quickGelu),
        Text = new ClipTextConfig(),
    };
}

/// <summary>The causal text transformer of CLIP.</summary>
public sealed class TextTransformer : Module<Tensor, Tensor>
{
    public Embedding token_embedding;
    public Parameter positional_embedding;
    public ModuleList<Block> blocks;
    public Module<Tensor, Tensor> ln_final;
    public Parameter text_projection;

    public TextTransformer(ClipTextConfig c, int embedDim, bool quickGelu) : base("TextTransformer")
    {
        token_embedding = Embedding(c.VocabSize, c.Width);
        positional_embedding = new Parameter(empty(c.ContextLength, c.Width));
        blocks = ModuleList(Enumerable.Range(0, c.Layers).Select(_ => new Block(c.Width, c.Heads, c.MlpRatio, true, null,
            0, 0, 0, 1e-5, quickGelu ? "quick_gelu" : "gelu")).ToArray());
        ln_final = LayerNorm(c.Width, eps: 1e-5);
        text_projection = new Parameter(empty(c.Width, embedDim));
        RegisterComponents();
        using (no_grad())
        {
            init.normal_(token_embedding.weight, std: 0.02);
            init.normal_(positional_embedding, std: 0.01);
            init.normal_(text_projection, std: Math.Pow(c.Width, -0.5));
        }
    }

    /// <summary>Text features [B, embed] from token ids [B, context] (unnormalised).</summary>
    public override Tensor forward(Tensor text)
    {
        long n = text.shape[1];
        if (n > positional_embedding.shape[0])
            throw new PeftSharpException($"text input: {n} tokens exceed the context length {positional_embedding.shape[0]}");
        var x = token_embedding.forward(text) + positional_embedding[..(int)n];
        // Additive causal mask: −inf above the diagonal (a position sees itself and earlier ones). Built per call rather
        // than held as a field, which RegisterComponents would turn into a persistent buffer (open_clip's is not).
        var mask = full(n, n, float.NegativeInfinity, dtype: x.dtype, device: x.device).triu(1);
        var layout = TokenLayout.Sequence();
        foreach (var block in blocks) x = block.forward(x, layout, mask);
        x = ln_final.forward(x);
        // The end-of-text token has the largest id in each row.
        var pooled = x[arange(x.shape[0], device: x.device), text.argmax(-1)];
        return pooled.matmul(text_projection);
    }
}

/// <summary>The CLIP dual encoder: visual, text, logit_scale.</summary>
public sealed class ClipModel : Module<Tensor, Tensor, (Tensor LogitsPerImage, Tensor LogitsPerText)>
{
    public VisionTransformer visual;
    public TextTransformer text;
    public Parameter logit_scale;

    public ClipModel(ClipConfig config) : base("CLIP")
    {
        Config = config;
        visual = new VisionTransformer(config.Vision);
        text = new TextTransformer(config.Text, config.EmbedDim, config.QuickGelu);
        logit_scale = new Parameter(tensor((float)Math.Log(1 / 0.07)));
        RegisterComponents();
    }

    public ClipConfig Config { get; }

    public Tensor EncodeImage(Tensor image, bool normalize = false)
    {
        var features = visual.forward(image);
        return normalize ? F.normalize(features, dim: -1) : features;
    }

    public Tensor EncodeText(Tensor tokens, bool normalize = false)
    {
        var features = text.forward(tokens);
        return normalize ? F.normalize(features, dim: -1) : features;
    }

    /// <summary>logit_scale.exp() · normalised image features @ normalised text featuresᵀ, and its transpose.</summary>
    public override (Tensor LogitsPerImage, Tensor LogitsPerText) forward(Tensor image, Tensor tokens)
    {
        var perImage = logit_scale.exp() * EncodeImage(image, true).matmul(EncodeText(tokens, true).t());
        return (perImage, perImage.t());
    }
}
