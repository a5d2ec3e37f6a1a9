using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Models;

/// <summary>timm's default ViT initialisation ('' weight_init): trunc-normal(0.02) pos_embed and Linear weights, zero
/// biases, cls/reg tokens N(0, 1e-6); LayerNorm 1/0 and the patch conv keep PyTorch's defaults.
/// TorchSharp 0.107's nn.init.trunc_normal_ occasionally writes NaN (about one element in five million, seen
/// here), which silently ruins a model; <see cref="TruncNormal"/> replaces it.</summary>
public static class InitWeights
{
    public static void Vit(VisionTransformer model)
    {
        using var _ = no_grad();
        TruncNormal(model.pos_embed, 0.02);
        if (model.cls_token is not null) nn.init.normal_(model.cls_token, std: 1e-6);
        if (model.reg_token is not null) nn.init.normal_(model.reg_token, std: 1e-6);
        foreach (var (_, module) in model.named_modules())
            if (module is Linear linear) TimmLinear(linear);
    }

    public static void TimmLinear(Linear linear)
    {
        using var _ = no_grad();
        TruncNormal(linear.weight!, 0.02);
        if (linear.bias is not null) nn.init.zeros_(linear.bias);
    }

    /// <summary>timm's trunc_normal_(std, a=-2, b=2): normal samples, those outside [a, b] (absolute bounds, as in
    /// timm) drawn again.</summary>
    public static void TruncNormal(Tensor t, double std, double a = -2, double b = 2)
    {
        using var _ = no_grad();
        t.normal_(0, std);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            using var outside = t.lt(a).logical_or(t.gt(b)).logical_or(t.isnan());
            if (!outside.any().item<bool>()) return;
            using var fresh = empty_like(t).normal_(0, std);
            t.copy_(where(outside, fresh, t));
        }
        t.clamp_(a, b);
    }

    /// <summary>
    /// A 2-D sine-cosine position embedding for [prefix tokens (zeros)][grid × grid patches], row-major, as MAE
    /// initialises (and fixes) its pos_embed: half the channels encode the row, half the column. Used to initialise
    /// the learnable pos_embed when pretraining from scratch, where timm's N(0, 0.02) leaves position so weak that a
    /// small ViT spends thousands of steps at chance on spatial tasks (measured here).
    /// </summary>
    public static Tensor SinCosPositionEmbedding(int dim, int grid, int prefixTokens)
    {
        if (dim % 4 != 0) throw new ArgumentException($"embedding width {dim} must be a multiple of 4", nameof(dim));
        using var scope = NewDisposeScope();
        int quarter = dim / 4;
        var omega = 1.0 / pow(10000.0, arange(quarter, dtype: float32) / quarter);
        var coords = arange(grid, dtype: float32);
        Tensor Encode(Tensor position)
        {
            var angles = position.unsqueeze(1) * omega.unsqueeze(0);
            return cat(new[] { angles.sin(), angles.cos() }, 1);
        }
        var patches = cat(new[] { Encode(coords.repeat_interleave(grid)), Encode(coords.repeat(grid)) }, 1);
        return cat(new[] { zeros(prefixTokens, dim), patches }, 0).unsqueeze(0).MoveToOuterDisposeScope();
    }
}
