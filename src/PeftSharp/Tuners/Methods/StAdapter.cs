using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// ST-Adapter (Pan et al., NeurIPS 2022; linziyi96/st-adapter st_adapter.py): on the residual stream before a block's
/// attention (and optionally before its MLP), x + Up(DWConv3d(Down(x))) over the patch tokens laid out as
/// [T, H, W] — the depthwise 3-D convolution (kernel 3×1×1 by default: time only) is where the frozen image-style
/// blocks get temporal modelling. As in the authors' code: no activation, the conv's weight and bias and both biases
/// start at zero (so the adapter starts as identity), Down keeps PyTorch's default init, and the class token (and any
/// prompt) is passed through untouched. Parameters per adapter 2Dr + r·(k_t·k_h·k_w + 1) + r + D.
/// Applies to video encoders only: on one frame the temporal kernel sees only its centre tap and the method is a plain
/// linear bottleneck adapter (use adapter-pfeiffer / adapter on images).
/// </summary>
public sealed class StAdapter : TunerMethod
{
    public override string Id => "st-adapter";
    public override string Summary => "video: bottleneck with a depthwise 3-D conv over time before attention (video ViT only)";
    public override string Reference => "Pan et al., NeurIPS 2022 (ST-Adapter); linziyi96/st-adapter: zero-initialised depthwise Conv3d, before attention";
    public override bool Mergeable => false;
    public override bool VideoOnly => true;

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 96, new[] { 32, 64, 96, 128 }, "bottleneck channels r (the authors use D/2)"),
        HyperSpec.Int("kernel_t", 3, new[] { 3, 5 }, "temporal kernel size (odd)"),
        HyperSpec.Int("kernel_s", 1, new[] { 1, 3 }, "spatial kernel size (odd; the authors' ViT-B/16 setting is 1)"),
        HyperSpec.Bool("pre_mlp", false, "a second adapter before the MLP (the authors' --adapter_pre_mlp)", new[] { false, true }),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        if (!encoder.IsVideo)
            throw new PeftSharpException($"method '{Id}' models time and applies to the video ViT only; on images it is a plain bottleneck adapter (use adapter-pfeiffer or adapter)");
        int kt = h.Int("kernel_t"), ks = h.Int("kernel_s");
        if (kt % 2 == 0 || ks % 2 == 0) throw new PeftSharpException($"method '{Id}': kernel_t and kernel_s must be odd (got {kt}, {ks})");
        var placements = new List<(string, InsertionPoint[])> { ("st_adapter_attn", new[] { InsertionPoint.BlockInput }) };
        if (h.Bool("pre_mlp")) placements.Add(("st_adapter_mlp", new[] { InsertionPoint.BetweenBranches }));
        return HookTuner.PerBlock(this, h, encoder, placements, _ => new SpaceTimeAdapter(encoder.EmbedDim, h.Int("rank"), kt, ks));
    }
}

/// <summary>x + fc2(conv(fc1(x))) on the patch tokens viewed as [B, r, T, H, W]; other tokens unchanged.</summary>
public sealed class SpaceTimeAdapter : BlockTuner
{
    public Linear fc1;
    public Conv3d conv;
    public Linear fc2;
    readonly int rank;

    public SpaceTimeAdapter(int dim, int rank, int kernelT, int kernelS) : base("SpaceTimeAdapter")
    {
        this.rank = rank;
        fc1 = Linear(dim, rank);
        conv = Conv3d(rank, rank, kernel_size: (kernelT, kernelS, kernelS), padding: (kernelT / 2, kernelS / 2, kernelS / 2), groups: rank);
        fc2 = Linear(rank, dim);
        using (no_grad())
        {
            init.zeros_(conv.weight!);
            init.zeros_(conv.bias!);
            init.zeros_(fc1.bias!);
            init.zeros_(fc2.bias!);
        }
        RegisterComponents();
    }

    /// <summary>The prefix tokens pass through unchanged.</summary>
    public override bool PrefixTokensStandAlone => true;

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        int start = layout.PatchStart;
        if (x.shape[1] <= start) return x;
        long b = x.shape[0];
        int t = layout.Frames, h = layout.GridHeight, w = layout.GridWidth;
        var patches = x[.., start..];
        var grid = fc1.forward(patches).reshape(b, t, h, w, rank).permute(0, 4, 1, 2, 3);
        var mixed = conv.forward(grid).permute(0, 2, 3, 4, 1).reshape(b, (long)t * h * w, rank);
        var updated = patches + fc2.forward(mixed);
        return start == 0 ? updated : cat(new[] { x[.., ..start], updated }, 1);
    }
}
