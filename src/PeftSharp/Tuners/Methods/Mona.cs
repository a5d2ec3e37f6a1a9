using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// Mona, the multi-cognitive visual adapter (Yin et al., "5%&gt;100%: Breaking Performance Shackles of Full Fine-Tuning on
/// Visual Recognition Tasks", CVPR 2025; Leiyi-Hu/mona, written for Swin). Two per block, sequential on the residual
/// stream: after the attention residual and after the MLP residual,
/// x ← x + Up(Dropout(GELU(Op(Down(LN(x)·γ + x·γₓ))))), γ = 1e-6 and γₓ = 1 per channel, Down D→m, Up m→D, and
/// Op(p) = q + Conv1×1(q) with q = p + (DW3×3(p) + DW5×5(p) + DW7×7(p))/3 over the patch grid. On a ViT the prefix
/// tokens (class, registers, prompts) are split off before the patch tokens are reshaped to the grid; each goes
/// through Op as a 1×1 map of its own, where the "same"-padded convs reduce to their centre taps and biases (as
/// ConvPass treats its class token), so its output depends on it alone. Linear weights trunc-normal 0.02, zero
/// biases (the backbone init that Mona's code applies to its modules); convs keep PyTorch's default init, so Mona
/// does not start as the base model. Needs a patch grid (not the text tower). Not mergeable.
/// Parameters per module 2Dm + D + m + 4D + m(9+25+49+3) + m² + m: 111,872 for ViT-B at m = 64.
/// </summary>
public sealed class Mona : TunerMethod
{
    public override CapacityKnob? Capacity => new("dim", ["32", "64"], ["8", "16", "32", "64"]);
    public override string Id => "mona";
    public override string Summary => "multi-scale depthwise-conv adapters after the attention and MLP residuals";
    public override bool Mergeable => false;
    public override string Reference => "Yin et al., CVPR 2025 (Mona); Leiyi-Hu/mona swin_transformer_mona.py, class token split off on the ViT";

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("dim", 64, new[] { 8, 16, 32, 64 }, "bottleneck width m (the authors fix 64)"),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout before Up", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        encoder.RequirePatches(Id);
        var placements = new[]
        {
            ("mona_attn", new[] { InsertionPoint.BetweenBranches }), ("mona_mlp", new[] { InsertionPoint.BlockOutput }),
        };
        return HookTuner.PerBlock(this, h, encoder, placements, _ => new MonaLayer(encoder.EmbedDim, h.Int("dim"), h.Double("dropout")));
    }
}

/// <summary>Mona's multi-scale op on m channels: q = p + mean of depthwise 3×3, 5×5, 7×7 convs; q + Conv1×1(q).</summary>
public sealed class MonaOp : nn.Module<Tensor, Tensor>
{
    public Conv2d conv1;
    public Conv2d conv2;
    public Conv2d conv3;
    public Conv2d projector;

    public MonaOp(int channels) : base("MonaOp")
    {
        conv1 = Conv2d(channels, channels, 3, padding: 1, groups: channels);
        conv2 = Conv2d(channels, channels, 5, padding: 2, groups: channels);
        conv3 = Conv2d(channels, channels, 7, padding: 3, groups: channels);
        projector = Conv2d(channels, channels, 1);
        RegisterComponents();
    }

    /// <summary>On an NCHW grid.</summary>
    public override Tensor forward(Tensor grid)
    {
        var mixed = (conv1.forward(grid) + conv2.forward(grid) + conv3.forward(grid)) / 3.0 + grid;
        return mixed + projector.forward(mixed);
    }

    /// <summary>The same op on tokens [B, n, m] each standing alone as a 1×1 map: every depthwise conv reduces to its
    /// centre tap and bias, the 1×1 projector to a linear map. Computed as that, not as convolutions of 1×1 maps,
    /// whose libtorch backward sometimes returns uninitialised input gradients (see ConvPass).</summary>
    public Tensor AloneTokens(Tensor tokens)
    {
        Tensor Centre(Conv2d conv, int k) => conv.weight![.., 0, k / 2, k / 2];
        var centres = (Centre(conv1, 3) + Centre(conv2, 5) + Centre(conv3, 7)) / 3.0;
        var biases = (conv1.bias! + conv2.bias! + conv3.bias!) / 3.0;
        var mixed = tokens * (centres + 1.0) + biases;
        return mixed + F.linear(mixed, projector.weight!.flatten(1), projector.bias);
    }
}

/// <summary>One Mona module on the residual stream (keys as the authors': project1, project2, adapter_conv, norm,
/// gamma, gammax).</summary>
public sealed class MonaLayer : BlockTuner
{
    public LayerNorm norm;
    public Parameter gamma;
    public Parameter gammax;
    public Linear project1;
    public MonaOp adapter_conv;
    public ParallelDropout dropout;
    public Linear project2;
    readonly int dim;

    public MonaLayer(int width, int dim, double dropoutRate) : base("Mona")
    {
        this.dim = dim;
        norm = LayerNorm(width);
        gamma = new Parameter(full(width, 1e-6));
        gammax = new Parameter(ones(width));
        project1 = Linear(width, dim);
        adapter_conv = new MonaOp(dim);
        dropout = new ParallelDropout(dropoutRate);
        project2 = Linear(dim, width);
        InitWeights.TimmLinear(project1);
        InitWeights.TimmLinear(project2);
        RegisterComponents();
    }

    /// <summary>The prefix tokens are 1×1 maps of their own (<see cref="MonaOp.AloneTokens"/>).</summary>
    public override bool PrefixTokensStandAlone => true;

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (!layout.HasGrid) throw new PeftSharpException("mona needs a patch grid (an image encoder)");
        // LN(x)·γ + x·γₓ, as one fused multiply-add on the normed tensor.
        var scaled = (x * gammax).addcmul(norm.forward(x), gamma, 1);
        var down = project1.forward(scaled);
        var mixed = MixTokens(down, layout);
        return x + project2.forward(dropout.forward(F.gelu(mixed)));
    }

    /// <summary>Op over [B, N, m]: prefix tokens alone, patch tokens as the H×W grid, concatenated back in order.</summary>
    Tensor MixTokens(Tensor down, TokenLayout layout)
    {
        long b = down.shape[0];
        int start = layout.PatchStart, h = layout.GridHeight, w = layout.GridWidth;
        var parts = new List<Tensor>();
        if (start > 0) parts.Add(adapter_conv.AloneTokens(down[.., ..Math.Min(start, (int)down.shape[1])]));
        if (down.shape[1] > start)   // else the block computes its leading prefix tokens alone
        {
            // A clip's frames are convolved as separate grids (the 2-D convs do not mix time).
            var grid = down[.., start..].reshape(b * layout.Frames, h, w, dim).permute(0, 3, 1, 2);
            parts.Add(adapter_conv.forward(grid).permute(0, 2, 3, 1).reshape(b, (long)layout.Frames * h * w, dim));
        }
        return parts.Count == 1 ? parts[0] : cat(parts.ToArray(), 1);
    }
}
