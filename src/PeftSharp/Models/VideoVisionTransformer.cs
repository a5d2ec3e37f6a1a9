// A VideoMAE-compatible video Vision Transformer (MCG-NJU/VideoMAE modeling_finetune.VisionTransformer): tubelet
// patch embedding (a Conv3d over t×p×p), the fixed sinusoid position table (or a learnable one), joint space-time
// attention over every token of the clip, layer scale, mean pooling with fc_norm. Its blocks are the image ViT's
// Block modules under timm's names, so every tuner that attaches to a ViT block attaches here unchanged; VideoMAE's
// own names (attn.q_bias/v_bias, gamma_1/gamma_2) are mapped at load (VideoMaeKeys), so its released checkpoints load.
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Models;

/// <summary>
/// The architecture of a <see cref="VideoVisionTransformer"/>, named after VideoMAE's fine-tuning constructor
/// arguments (all_frames, tubelet_size, use_learnable_pos_emb, use_mean_pooling, fc_drop_rate, init_values …), plus
/// class_token and norm_eps for models inflated from a class-token image ViT.
/// </summary>
public sealed record VideoVitConfig
{
    public int ImgSize { get; init; } = 224;
    public int PatchSize { get; init; } = 16;
    public int InChans { get; init; } = 3;
    public int NumClasses { get; init; } = 400;
    public int EmbedDim { get; init; } = 768;
    public int Depth { get; init; } = 12;
    public int NumHeads { get; init; } = 12;
    public double MlpRatio { get; init; } = 4.0;
    public bool QkvBias { get; init; } = true;
    /// <summary>Layer-scale init value; null (VideoMAE's 0) disables layer scale.</summary>
    public double? InitValues { get; init; }
    /// <summary>Frames per clip (VideoMAE's all_frames).</summary>
    public int NumFrames { get; init; } = 16;
    /// <summary>Frames per tubelet: the Conv3d's temporal kernel and stride.</summary>
    public int TubeletSize { get; init; } = 2;
    /// <summary>A learnable pos_embed (a weight) instead of the fixed sinusoid table (not a weight).</summary>
    public bool LearnablePosEmbed { get; init; }
    /// <summary>Mean of the patch tokens through fc_norm (VideoMAE's default); false: the class token after norm.</summary>
    public bool UseMeanPooling { get; init; } = true;
    /// <summary>A class token in front of the patch tokens (not in VideoMAE; kept when inflating a class-token ViT).</summary>
    public bool ClassToken { get; init; }
    public double FcDropRate { get; init; }
    /// <summary>VideoMAE's drop_rate: after the position embedding and after the attention projection and the MLP.</summary>
    public double DropRate { get; init; }
    public double AttnDropRate { get; init; }
    public double DropPathRate { get; init; }
    public double NormEps { get; init; } = 1e-6;

    public int GridSize => ImgSize / PatchSize;
    public int TemporalSize => NumFrames / TubeletSize;
    public int NumPatches => TemporalSize * GridSize * GridSize;
    public int NumPrefixTokens => ClassToken ? 1 : 0;

    public VideoVitConfig Validate(string source = "video config")
    {
        void Require(bool ok, string message)
        {
            if (!ok) throw new PeftSharpException($"{source}: {message}");
        }
        Require(ImgSize > 0 && PatchSize > 0 && ImgSize % PatchSize == 0, $"img_size {ImgSize} must be a positive multiple of patch_size {PatchSize}");
        Require(TubeletSize > 0 && NumFrames > 0 && NumFrames % TubeletSize == 0, $"all_frames {NumFrames} must be a positive multiple of tubelet_size {TubeletSize}");
        Require(InChans > 0 && EmbedDim > 0 && Depth >= 0 && NumHeads > 0, "in_chans, embed_dim, depth and num_heads must be positive");
        Require(EmbedDim % NumHeads == 0, $"embed_dim {EmbedDim} is not divisible by num_heads {NumHeads}");
        Require(LearnablePosEmbed || EmbedDim % 2 == 0, $"the sinusoid table needs an even embed_dim (got {EmbedDim})");
        Require(NumClasses >= 0, $"num_classes must be >= 0 (got {NumClasses})");
        Require(UseMeanPooling || ClassToken, "use_mean_pooling false needs class_token true (VideoMAE would pool its first patch token)");
        Require(!ClassToken || LearnablePosEmbed, "class_token needs use_learnable_pos_emb (the sinusoid table has no class position)");
        foreach (var (name, rate) in new[] { ("fc_drop_rate", FcDropRate), ("drop_rate", DropRate), ("attn_drop_rate", AttnDropRate), ("drop_path_rate", DropPathRate) })
            Require(rate >= 0 && rate < 1, $"{name} must be in [0, 1) (got {rate})");
        return this;
    }

    /// <summary>VideoMAE's constructor arguments as JSON (checkpoint metadata, run specs).</summary>
    public string ToJson() => new JsonObject
    {
        ["img_size"] = ImgSize, ["patch_size"] = PatchSize, ["in_chans"] = InChans, ["num_classes"] = NumClasses,
        ["embed_dim"] = EmbedDim, ["depth"] = Depth, ["num_heads"] = NumHeads, ["mlp_ratio"] = MlpRatio,
        ["qkv_bias"] = QkvBias, ["init_values"] = InitValues ?? 0.0, ["all_frames"] = NumFrames,
        ["tubelet_size"] = TubeletSize, ["use_learnable_pos_emb"] = LearnablePosEmbed,
        ["use_mean_pooling"] = UseMeanPooling, ["class_token"] = ClassToken, ["fc_drop_rate"] = FcDropRate,
        ["drop_rate"] = DropRate, ["attn_drop_rate"] = AttnDropRate, ["drop_path_rate"] = DropPathRate, ["norm_eps"] = NormEps,
    }.ToJsonString();

    /// <summary>Parses VideoMAE constructor arguments (unknown keys are errors, so typos are caught).</summary>
    public static VideoVitConfig FromJson(string json, string source = "video config")
    {
        JsonObject obj;
        try
        {
            obj = JsonNode.Parse(json) as JsonObject ?? throw new PeftSharpException($"{source}: expected a JSON object of VideoMAE arguments");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new PeftSharpException($"{source}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
        var c = new VideoVitConfig();
        foreach (var (key, node) in obj)
        {
            string where = $"{source}: field '{key}'";
            double Num() => node is JsonValue v && v.TryGetValue(out double d) ? d : throw new PeftSharpException($"{where}: expected a number");
            int Int() => Num() is var d && d == Math.Floor(d) ? (int)d : throw new PeftSharpException($"{where}: expected an integer");
            bool Bool() => node is JsonValue v && v.TryGetValue(out bool b) ? b : throw new PeftSharpException($"{where}: expected true or false");
            c = key switch
            {
                "img_size" => c with { ImgSize = Int() },
                "patch_size" => c with { PatchSize = Int() },
                "in_chans" => c with { InChans = Int() },
                "num_classes" => c with { NumClasses = Int() },
                "embed_dim" => c with { EmbedDim = Int() },
                "depth" => c with { Depth = Int() },
                "num_heads" => c with { NumHeads = Int() },
                "mlp_ratio" => c with { MlpRatio = Num() },
                "qkv_bias" => c with { QkvBias = Bool() },
                "init_values" => c with { InitValues = node is null || Num() == 0 ? null : Num() },
                "all_frames" => c with { NumFrames = Int() },
                "tubelet_size" => c with { TubeletSize = Int() },
                "use_learnable_pos_emb" => c with { LearnablePosEmbed = Bool() },
                "use_mean_pooling" => c with { UseMeanPooling = Bool() },
                "class_token" => c with { ClassToken = Bool() },
                "fc_drop_rate" => c with { FcDropRate = Num() },
                "drop_rate" => c with { DropRate = Num() },
                "attn_drop_rate" => c with { AttnDropRate = Num() },
                "drop_path_rate" => c with { DropPathRate = Num() },
                "norm_eps" => c with { NormEps = Num() },
                _ => throw new PeftSharpException($"{source}: unknown field '{key}' (expected VideoMAE arguments such as img_size, patch_size, all_frames, tubelet_size, embed_dim, depth, num_heads, num_classes)"),
            };
        }
        return c.Validate(source);
    }
}

/// <summary>Clip to tubelet tokens: a Conv3d with kernel = stride = (tubelet, patch, patch), flattened time-major to
/// [B, T/t · H/p · W/p, D].</summary>
public sealed class TubeletEmbed : nn.Module<Tensor, Tensor>
{
    public Conv3d proj;

    public TubeletEmbed(int tubelet, int patchSize, int inChans, int embedDim) : base("TubeletEmbed")
    {
        proj = nn.Conv3d(inChans, embedDim, kernel_size: (tubelet, patchSize, patchSize), stride: (tubelet, patchSize, patchSize));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => proj.forward(x).flatten(2).transpose(1, 2);
}

/// <summary>The video ViT: patch_embed, [cls_token], [pos_embed], pos_drop, blocks, norm, fc_norm, fc_dropout, head.</summary>
public sealed class VideoVisionTransformer : nn.Module<Tensor, Tensor>, IPatchEncoder
{
    public TubeletEmbed patch_embed;
    public Parameter? cls_token;
    /// <summary>The learnable table; null with the fixed sinusoid table (<see cref="SinusoidTable"/>, not a weight).</summary>
    public Parameter? pos_embed;
    public Dropout pos_drop;
    public ModuleList<Block> blocks;
    public Module<Tensor, Tensor> norm;
    public Module<Tensor, Tensor> fc_norm;
    public Dropout fc_dropout;
    public Module<Tensor, Tensor> head;
    readonly PointAttachments<EncoderPoint, EncoderTuner> tuners = new();
    // An array, so RegisterComponents does not make the fixed table a buffer (VideoMAE keeps it out of the state dict).
    readonly Tensor[] fixedTable;

    public VideoVisionTransformer(VideoVitConfig config) : base("VideoVisionTransformer")
    {
        Config = config.Validate();
        var c = Config;
        patch_embed = new TubeletEmbed(c.TubeletSize, c.PatchSize, c.InChans, c.EmbedDim);
        cls_token = c.ClassToken ? new Parameter(zeros(1, 1, c.EmbedDim)) : null;
        pos_embed = c.LearnablePosEmbed ? new Parameter(zeros(1, c.NumPatches + c.NumPrefixTokens, c.EmbedDim)) : null;
        fixedTable = c.LearnablePosEmbed ? Array.Empty<Tensor>() : new[] { SinusoidTable(c.NumPatches, c.EmbedDim) };
        pos_drop = nn.Dropout(c.DropRate);
        // Stochastic depth grows linearly with depth (VideoMAE's dpr); VideoMAE's drop_rate is the blocks' proj/MLP dropout.
        blocks = nn.ModuleList(Enumerable.Range(0, c.Depth).Select(i => new Block(
            c.EmbedDim, c.NumHeads, c.MlpRatio, c.QkvBias, c.InitValues, c.DropRate, c.AttnDropRate,
            c.Depth > 1 ? c.DropPathRate * i / (c.Depth - 1) : c.DropPathRate, c.NormEps, "gelu")).ToArray());
        norm = c.UseMeanPooling ? nn.Identity() : nn.LayerNorm(c.EmbedDim, eps: c.NormEps);
        fc_norm = c.UseMeanPooling ? nn.LayerNorm(c.EmbedDim, eps: c.NormEps) : nn.Identity();
        fc_dropout = nn.Dropout(c.FcDropRate);
        head = c.NumClasses > 0 ? nn.Linear(c.EmbedDim, c.NumClasses) : nn.Identity();
        RegisterComponents();
        using (no_grad())
        {
            if (pos_embed is not null) InitWeights.TruncNormal(pos_embed, 0.02);
            if (cls_token is not null) nn.init.normal_(cls_token, std: 1e-6);
            foreach (var (_, module) in named_modules())
                if (module is Linear linear) InitWeights.TimmLinear(linear);
        }
    }

    public VideoVitConfig Config { get; private set; }
    public int EmbedDim => Config.EmbedDim;
    public int PatchSize => Config.PatchSize;
    public bool GradCheckpointing { get; set; }
    public PointAttachments<EncoderPoint, EncoderTuner> Tuners => tuners;

    public void Attach(string name, EncoderTuner tuner, params EncoderPoint[] points) => tuners.Add(this, name, tuner, points);

    /// <summary>The token layout of a clip: prefix tokens, then T/t frames of H/p × W/p patches.</summary>
    public TokenLayout Layout() => new(Config.NumPrefixTokens, Config.GridSize, Config.GridSize, Config.TemporalSize);

    /// <summary>VideoMAE's get_sinusoid_encoding_table: angle pos / 10000^(2⌊j/2⌋/d), sin on even j, cos on odd j;
    /// [1, n, d], computed in double as numpy does, then float32.</summary>
    public static Tensor SinusoidTable(int positions, int dim)
    {
        var table = new float[positions * dim];
        for (int pos = 0; pos < positions; pos++)
            for (int j = 0; j < dim; j++)
            {
                double angle = pos / Math.Pow(10000, 2.0 * (j / 2) / dim);
                table[pos * dim + j] = (float)(j % 2 == 0 ? Math.Sin(angle) : Math.Cos(angle));
            }
        return tensor(table, new long[] { 1, positions, dim });
    }

    /// <summary>Replaces the classifier (a new zero-bias trunc-normal Linear, or Identity for 0 classes).</summary>
    public void ResetClassifier(int numClasses)
    {
        var newHead = numClasses > 0 ? nn.Linear(EmbedDim, numClasses) : (Module<Tensor, Tensor>)nn.Identity();
        if (newHead is Linear linear) InitWeights.TimmLinear(linear);
        ModuleSurgery.Replace(this, "head", newHead.to(patch_embed.proj.weight!.device));
        Config = Config with { NumClasses = numClasses };
    }

    /// <summary>Logits for clips [B, C, T, H, W].</summary>
    public override Tensor forward(Tensor x) => ForwardHead(ForwardFeatures(x, out var layout), layout);

    public Tensor ForwardFeatures(Tensor x, out TokenLayout layout) => ForwardFeatures(x, out layout, 0, Config.Depth);

    /// <summary>Runs blocks [firstBlock, endBlock); from block 0 the input is a clip batch, else the tokens entering
    /// firstBlock. The final norm runs when endBlock = depth (unless <paramref name="finalNorm"/> says otherwise).</summary>
    public Tensor ForwardFeatures(Tensor x, out TokenLayout layout, int firstBlock, int endBlock, TokenLayout? inputLayout = null, bool? finalNorm = null)
    {
        var c = Config;
        if (firstBlock == 0)
        {
            if (x.dim() != 5 || x.shape[1] != c.InChans)
                throw new PeftSharpException($"video model input: expected [B, {c.InChans}, T, H, W], got [{string.Join(", ", x.shape)}]");
            if (x.shape[2] != c.NumFrames || x.shape[3] != c.ImgSize || x.shape[4] != c.ImgSize)
                throw new PeftSharpException($"video model input: expected {c.NumFrames} frames of {c.ImgSize}x{c.ImgSize}, got {x.shape[2]} of {x.shape[3]}x{x.shape[4]}");
            layout = Layout();
            x = tuners.Sequential(EncoderPoint.AfterEmbedding, PositionEmbed(patch_embed.forward(x)), layout);
        }
        else layout = inputLayout ?? Layout();
        var trainable = GradCheckpointing && training && is_grad_enabled()
            ? parameters().Where(p => p.requires_grad).Cast<Tensor>().ToList() : null;
        for (int i = firstBlock; i < endBlock; i++)
        {
            var block = blocks[i];
            var output = trainable is null
                ? block.forward(x, layout, null)
                : GradCheckpoint.Run((input, l) => block.forward(input, l, null), x, layout, trainable);
            if (i > firstBlock || firstBlock == 0) x.Dispose();
            x = output;
        }
        return finalNorm ?? endBlock == c.Depth ? norm.forward(x) : x;
    }

    /// <summary>Pooling (mean of the patch tokens → fc_norm, or the class token), fc_dropout and head.</summary>
    public Tensor ForwardHead(Tensor tokens, TokenLayout layout, bool preLogits = false)
    {
        var pooled = Config.UseMeanPooling ? fc_norm.forward(tokens[.., layout.PatchStart..].mean(new long[] { 1 })) : tokens[.., 0];
        return preLogits ? pooled : head.forward(fc_dropout.forward(pooled));
    }

    Tensor PositionEmbed(Tensor x)
    {
        if (cls_token is not null) x = cat(new[] { cls_token.expand(x.shape[0], -1, -1), x }, 1);
        x = pos_embed is not null ? x + pos_embed : x + fixedTable[0].to(x.dtype, x.device);
        return pos_drop.forward(x);
    }
}

/// <summary>VideoMAE checkpoint names ↔ ours. VideoMAE's qkv Linear has no bias: its bias is q_bias | 0 | v_bias, which
/// is our qkv.bias with a zero key part (a key bias adds the same q·b to every score of a query, so softmax ignores it:
/// it has no gradient and stays zero when trained). gamma_1/gamma_2 are our ls1.gamma/ls2.gamma.</summary>
public static class VideoMaeKeys
{
    /// <summary>True when the keys are VideoMAE's (a 5-D patch kernel, and q_bias or gamma_1 where the model has them).</summary>
    public static bool IsVideoMae(Checkpoints.ITensorSource s) =>
        s.Contains("patch_embed.proj.weight") && s.Shape("patch_embed.proj.weight").Length == 5;

    /// <summary>The tensors of a VideoMAE checkpoint under our names (a "module."/"model." wrapper and
    /// "encoder." prefix of pretraining checkpoints are not handled: fine-tuning state dicts only).</summary>
    public static Checkpoints.MappedSource ToInternal(Checkpoints.ITensorSource s)
    {
        var m = new Checkpoints.MappedSource(s);
        foreach (var key in s.Keys)
        {
            var match = System.Text.RegularExpressions.Regex.Match(key, @"^blocks\.(\d+)\.(.+)$");
            if (!match.Success)
            {
                m.Rename(key, key);
                continue;
            }
            string b = $"blocks.{match.Groups[1].Value}.";
            switch (match.Groups[2].Value)
            {
                case "gamma_1": m.Rename(key, b + "ls1.gamma"); break;
                case "gamma_2": m.Rename(key, b + "ls2.gamma"); break;
                case "attn.v_bias": break;
                case "attn.q_bias":
                    string q = key, v = b + "attn.v_bias";
                    long d = s.Shape(q)[0];
                    m.Add(b + "attn.qkv.bias", new[] { 3 * d }, () =>
                    {
                        using var qb = s.Read(q);
                        using var vb = s.Read(v);
                        return cat(new[] { qb, zeros_like(qb), vb }, 0);
                    }, q, v);
                    break;
                default: m.Rename(key, key); break;
            }
        }
        return m;
    }

    /// <summary>Our state dict under VideoMAE's names (inverse of <see cref="ToInternal"/>; the zero key bias is dropped).</summary>
    public static Dictionary<string, Tensor> FromInternal(IReadOnlyDictionary<string, Tensor> state)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var (key, value) in state)
        {
            var match = System.Text.RegularExpressions.Regex.Match(key, @"^(blocks\.\d+\.)(ls1\.gamma|ls2\.gamma|attn\.qkv\.bias)$");
            if (!match.Success)
            {
                result[key] = value;
                continue;
            }
            string b = match.Groups[1].Value;
            if (match.Groups[2].Value == "ls1.gamma") result[b + "gamma_1"] = value;
            else if (match.Groups[2].Value == "ls2.gamma") result[b + "gamma_2"] = value;
            else
            {
                var parts = value.chunk(3, 0);
                result[b + "attn.q_bias"] = parts[0].contiguous();
                result[b + "attn.v_bias"] = parts[2].contiguous();
            }
        }
        return result;
    }
}
