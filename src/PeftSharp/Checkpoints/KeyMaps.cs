using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace PeftSharp.Checkpoints;

/// <summary>The naming scheme a checkpoint's keys follow.</summary>
public enum KeyConvention
{
    Unknown,
    /// <summary>timm VisionTransformer: patch_embed.proj, blocks.N.attn.qkv, ...</summary>
    Timm,
    /// <summary>Hugging Face transformers ViTModel / ViTForImageClassification: embeddings.*, encoder.layer.N.*</summary>
    HuggingFace,
    /// <summary>An OpenAI-CLIP / open_clip image tower alone: conv1, class_embedding, transformer.resblocks.N.*</summary>
    OpenAiClipVisual,
    /// <summary>A whole open_clip / OpenAI CLIP model: visual.*, token_embedding, transformer.*, text_projection</summary>
    OpenClip,
}

/// <summary>Maps checkpoint keys of other libraries to our (timm) names, with the tensor reshapes that needs.</summary>
public static class KeyMaps
{
    public static KeyConvention Detect(IEnumerable<string> keys)
    {
        var set = keys.ToHashSet();
        if (set.Contains("patch_embed.proj.weight")) return KeyConvention.Timm;
        if (set.Any(k => k.EndsWith("embeddings.patch_embeddings.projection.weight", StringComparison.Ordinal))) return KeyConvention.HuggingFace;
        if (set.Contains("visual.conv1.weight") && set.Contains("token_embedding.weight")) return KeyConvention.OpenClip;
        if (set.Contains("conv1.weight") || set.Contains("visual.conv1.weight")) return KeyConvention.OpenAiClipVisual;
        return KeyConvention.Unknown;
    }

    /// <summary>The ViT (image tower) tensors of <paramref name="source"/> under timm names.</summary>
    public static MappedSource VitToTimm(ITensorSource source, KeyConvention convention)
    {
        var mapped = new MappedSource(source);
        switch (convention)
        {
            case KeyConvention.Timm:
                foreach (var k in source.Keys) mapped.Rename(k, k);
                break;
            case KeyConvention.HuggingFace:
                MapHuggingFace(source, mapped);
                break;
            case KeyConvention.OpenAiClipVisual:
            case KeyConvention.OpenClip:
                MapClipVisual(source, mapped, source.Contains("visual.conv1.weight") ? "visual." : "", "");
                break;
            default:
                throw new PeftSharpException($"{source.Origin}: cannot tell which library wrote these keys (expected timm, Hugging Face ViT or OpenAI/open_clip CLIP names; first key '{source.Keys.FirstOrDefault()}')");
        }
        return mapped;
    }

    /// <summary>A whole open_clip model under our <see cref="Models.ClipModel"/> names.</summary>
    public static MappedSource ClipToInternal(ITensorSource source)
    {
        var mapped = new MappedSource(source);
        MapClipVisual(source, mapped, "visual.", "visual.");
        foreach (var k in source.Keys)
        {
            var m = Regex.Match(k, @"^transformer\.resblocks\.(\d+)\.(.+)$");
            if (m.Success && ClipBlockToTimm(m.Groups[2].Value) is string inner)
                mapped.Rename(k, $"text.blocks.{m.Groups[1].Value}.{inner}");
        }
        foreach (var name in new[] { "token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection" })
            if (source.Contains(name)) mapped.Rename(name, "text." + name);
        if (source.Contains("logit_scale")) mapped.Rename("logit_scale", "logit_scale");
        return mapped;
    }

    /// <summary>Our ClipModel state dict under open_clip names (inverse of <see cref="ClipToInternal"/>).</summary>
    public static Dictionary<string, Tensor> InternalToClip(IReadOnlyDictionary<string, Tensor> state)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var (key, value) in state)
        {
            var (name, tensor) = InternalToClipKey(key, value);
            result[name] = tensor;
        }
        return result;
    }

    static (string, Tensor) InternalToClipKey(string key, Tensor value)
    {
        if (key.StartsWith("text.blocks.", StringComparison.Ordinal))
        {
            var m = Regex.Match(key, @"^text\.blocks\.(\d+)\.(.+)$");
            return ($"transformer.resblocks.{m.Groups[1].Value}.{TimmBlockToClip(m.Groups[2].Value)}", value);
        }
        if (key.StartsWith("text.", StringComparison.Ordinal)) return (key["text.".Length..], value);
        if (!key.StartsWith("visual.", StringComparison.Ordinal)) return (key, value);
        string v = key["visual.".Length..];
        var block = Regex.Match(v, @"^blocks\.(\d+)\.(.+)$");
        if (block.Success) return ($"visual.transformer.resblocks.{block.Groups[1].Value}.{TimmBlockToClip(block.Groups[2].Value)}", value);
        return v switch
        {
            "patch_embed.proj.weight" => ("visual.conv1.weight", value),
            "cls_token" => ("visual.class_embedding", value.reshape(value.shape[^1])),
            "pos_embed" => ("visual.positional_embedding", value.reshape(value.shape[^2], value.shape[^1])),
            "head.weight" => ("visual.proj", value.t().contiguous()),
            _ when v.StartsWith("norm_pre.", StringComparison.Ordinal) => ("visual.ln_pre." + v["norm_pre.".Length..], value),
            _ when v.StartsWith("norm.", StringComparison.Ordinal) => ("visual.ln_post." + v["norm.".Length..], value),
            _ => (key, value),
        };
    }

    static readonly (string Clip, string Timm)[] BlockNames =
    {
        ("ln_1.", "norm1."), ("attn.in_proj_weight", "attn.qkv.weight"), ("attn.in_proj_bias", "attn.qkv.bias"),
        ("attn.out_proj.", "attn.proj."), ("ln_2.", "norm2."), ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."),
        ("ls_1.", "ls1."), ("ls_2.", "ls2."),
    };

    static string? ClipBlockToTimm(string rest)
    {
        foreach (var (clip, timm) in BlockNames)
            if (rest.StartsWith(clip, StringComparison.Ordinal)) return timm + rest[clip.Length..];
        return null;
    }

    static string TimmBlockToClip(string rest)
    {
        foreach (var (clip, timm) in BlockNames)
            if (rest.StartsWith(timm, StringComparison.Ordinal)) return clip + rest[timm.Length..];
        return rest;
    }

    static void MapClipVisual(ITensorSource s, MappedSource m, string from, string to)
    {
        void Rename(string a, string b)
        {
            if (s.Contains(from + a)) m.Rename(from + a, to + b);
        }
        Rename("conv1.weight", "patch_embed.proj.weight");
        if (s.Contains(from + "class_embedding"))
        {
            long d = s.Shape(from + "class_embedding")[^1];
            m.Add(to + "cls_token", new[] { 1L, 1, d }, () => s.Read(from + "class_embedding").reshape(1, 1, d), from + "class_embedding");
        }
        if (s.Contains(from + "positional_embedding"))
        {
            var shape = s.Shape(from + "positional_embedding");
            m.Add(to + "pos_embed", new[] { 1L, shape[0], shape[1] }, () => s.Read(from + "positional_embedding").unsqueeze(0), from + "positional_embedding");
        }
        foreach (var p in new[] { "weight", "bias" })
        {
            Rename("ln_pre." + p, "norm_pre." + p);
            Rename("ln_post." + p, "norm." + p);
        }
        if (s.Contains(from + "proj"))
        {
            var shape = s.Shape(from + "proj");
            m.Add(to + "head.weight", new[] { shape[1], shape[0] }, () => s.Read(from + "proj").t().contiguous(), from + "proj");
        }
        foreach (var k in s.Keys)
        {
            if (!k.StartsWith(from + "transformer.resblocks.", StringComparison.Ordinal)) continue;
            var match = Regex.Match(k[from.Length..], @"^transformer\.resblocks\.(\d+)\.(.+)$");
            if (match.Success && ClipBlockToTimm(match.Groups[2].Value) is string inner)
                m.Rename(k, $"{to}blocks.{match.Groups[1].Value}.{inner}");
        }
    }

    static void MapHuggingFace(ITensorSource s, MappedSource m)
    {
        string p = s.Keys.First(k => k.EndsWith("embeddings.patch_embeddings.projection.weight", StringComparison.Ordinal));
        p = p[..^"embeddings.patch_embeddings.projection.weight".Length];
        void Rename(string a, string b)
        {
            if (s.Contains(a)) m.Rename(a, b);
        }
        Rename(p + "embeddings.cls_token", "cls_token");
        Rename(p + "embeddings.position_embeddings", "pos_embed");
        Rename(p + "embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight");
        Rename(p + "embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias");
        foreach (var t in new[] { "weight", "bias" })
        {
            Rename(p + "layernorm." + t, "norm." + t);
            Rename("classifier." + t, "head." + t);
        }
        var layers = s.Keys.Select(k => Regex.Match(k, "^" + Regex.Escape(p) + @"encoder\.layer\.(\d+)\."))
                           .Where(x => x.Success).Select(x => int.Parse(x.Groups[1].Value)).Distinct();
        foreach (int i in layers)
        {
            string l = $"{p}encoder.layer.{i}.", b = $"blocks.{i}.";
            foreach (var t in new[] { "weight", "bias" })
            {
                Rename(l + "layernorm_before." + t, b + "norm1." + t);
                Rename(l + "layernorm_after." + t, b + "norm2." + t);
                Rename(l + "attention.output.dense." + t, b + "attn.proj." + t);
                Rename(l + "intermediate.dense." + t, b + "mlp.fc1." + t);
                Rename(l + "output.dense." + t, b + "mlp.fc2." + t);
                // Hugging Face keeps query/key/value separate; timm fuses them as q|k|v rows.
                var qkv = new[] { "query", "key", "value" }.Select(n => $"{l}attention.attention.{n}.{t}").ToArray();
                if (qkv.All(s.Contains))
                {
                    var shape = s.Shape(qkv[0]).ToArray();
                    shape[0] *= 3;
                    m.Add(b + "attn.qkv." + t, shape, () =>
                    {
                        var parts = qkv.Select(s.Read).ToArray();
                        var fused = cat(parts, 0);
                        foreach (var part in parts) part.Dispose();
                        return fused;
                    }, qkv);
                }
            }
        }
    }
}
