using static TorchSharp.torch;

namespace PeftSharp.Models;

/// <summary>
/// A video ViT from an image ViT (I3D's inflation, as TimeSformer/ViViT start from image weights): the 2-D patch kernel
/// is repeated over the tubelet's frames and divided by the tubelet size, and the patch position embeddings are
/// repeated over the temporal positions; blocks and norms are copied as they are; a class token keeps its position
/// and class-token pooling. For a ViT without a class token, a clip of one image repeated gives exactly the image
/// model's features: each tubelet then embeds to the image's patch, and attention over T copies of every key and
/// value is attention over one (the softmax weight splits evenly among identical keys). With a class token it is
/// close, not exact: its one key then weighs 1/T of what it did against the patches.
/// </summary>
public static class VideoInflation
{
    /// <param name="numClasses">A fresh head of this many classes (the image head is not carried over).</param>
    public static VideoVisionTransformer Inflate(VisionTransformer image, int numFrames, int tubeletSize, int numClasses,
                                                 double dropPathRate = 0)
    {
        var c = image.Config;
        if (c.PreNorm) throw new PeftSharpException("inflation: image ViTs with a pre-norm (CLIP towers) are not supported");
        if (c.RegTokens > 0) throw new PeftSharpException("inflation: image ViTs with register tokens are not supported");
        if (c.NoEmbedClass && c.ClassToken) throw new PeftSharpException("inflation: class tokens without a position (no_embed_class) are not supported");
        if (c.ActLayer != "gelu") throw new PeftSharpException($"inflation: the video ViT uses GELU; the image ViT uses {c.ActLayer}");
        if (!c.FinalNorm) throw new PeftSharpException("inflation: image ViTs without a final norm are not supported");
        var config = new VideoVitConfig
        {
            ImgSize = c.ImgSize, PatchSize = c.PatchSize, InChans = c.InChans, NumClasses = numClasses,
            EmbedDim = c.EmbedDim, Depth = c.Depth, NumHeads = c.NumHeads, MlpRatio = c.MlpRatio, QkvBias = c.QkvBias,
            InitValues = c.InitValues, NumFrames = numFrames, TubeletSize = tubeletSize, LearnablePosEmbed = true,
            ClassToken = c.ClassToken, UseMeanPooling = c.UseFcNorm, NormEps = c.NormEps, DropPathRate = dropPathRate,
        }.Validate("inflation");
        var video = new VideoVisionTransformer(config);
        var source = image.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        using var _ = no_grad();
        foreach (var (name, target) in video.named_parameters())
        {
            if (name.StartsWith("head.", StringComparison.Ordinal)) continue;
            var value = name switch
            {
                "patch_embed.proj.weight" => source[name].unsqueeze(2).repeat(1, 1, tubeletSize, 1, 1) / tubeletSize,
                "pos_embed" => InflatePositions(source[name], c.NumPrefixTokens, config.TemporalSize),
                _ => source.TryGetValue(name, out var t) ? t
                    : throw new PeftSharpException($"inflation: the image ViT has no '{name}'"),
            };
            if (!value.shape.SequenceEqual(target.shape))
                throw new PeftSharpException($"inflation: '{name}' is [{string.Join(", ", value.shape)}], the video ViT needs [{string.Join(", ", target.shape)}]");
            target.copy_(value);
        }
        return video;
    }

    /// <summary>[1, prefix + N, D] → [1, prefix + T·N, D]: the prefix positions once, the patch positions per frame.</summary>
    public static Tensor InflatePositions(Tensor posEmbed, int prefixTokens, int temporalSize) =>
        cat(new[] { posEmbed[.., ..prefixTokens], posEmbed[.., prefixTokens..].repeat(1, temporalSize, 1) }, 1);
}
