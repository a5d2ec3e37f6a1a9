using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// ConvPass (Jie &amp; Deng 2022): parallel to the attention and to the MLP, fed the LayerNorm output:
/// Down → QuickGELU → 3×3 conv over the patch grid → QuickGELU → dropout → Up, times s. Tokens that are not patches
/// (class, registers, prompts) are convolved as 1×1 maps, as ConvPass does for the class token (computed as the
/// linear map that is). The conv starts as
/// identity at its centre (or Xavier), Up starts at zero. Parameters per adapter 2Dr + 9r² + 2r + D.
/// </summary>
public sealed class ConvPass : TunerMethod
{
    public override IReadOnlyDictionary<string, string[]> OtherBenchKnobs => new Dictionary<string, string[]> { ["scale"] = ["1", "10"] };
    public override string Id => "convpass";
    public override string Summary => "convolutional bypasses parallel to attention and MLP";
    public override string Reference => "Jie & Deng 2022 (Convpass); placement as in the unifying study";
    public override bool Mergeable => false;
    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 8, new[] { 8, 16 }, "bottleneck channels r"),
        HyperSpec.Double("scale", 10, new[] { 0.01, 0.1, 1, 10, 100 }, "output scale s", min: 0),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout before Up", min: 0, max: 0.99),
        HyperSpec.Bool("xavier", false, "Xavier-initialise the conv instead of an identity centre", new[] { true, false }),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        encoder.RequirePatches(Id);
        var placements = new[] { ("convpass_attn", new[] { InsertionPoint.AttnParallelNormed }), ("convpass_mlp", new[] { InsertionPoint.MlpParallelNormed }) };
        return HookTuner.PerBlock(this, h, encoder, placements, _ =>
            new ConvBypass(encoder.EmbedDim, h.Int("rank"), h.Double("scale"), h.Double("dropout"), h.Bool("xavier")));
    }
}

public sealed class ConvBypass : BlockTuner
{
    public Linear adapter_down;
    public Conv2d adapter_conv;
    public Linear adapter_up;
    public ParallelDropout dropout;
    readonly double scale;
    readonly int rank;

    public ConvBypass(int dim, int rank, double scale, double dropoutRate, bool xavier) : base("ConvBypass")
    {
        this.rank = rank;
        this.scale = scale;
        adapter_down = Linear(dim, rank);
        adapter_conv = Conv2d(rank, rank, 3, padding: 1);
        adapter_up = Linear(rank, dim);
        dropout = new ParallelDropout(dropoutRate);
        using (no_grad())
        {
            if (xavier) init.xavier_uniform_(adapter_conv.weight!);
            else
            {
                init.zeros_(adapter_conv.weight!);
                adapter_conv.weight![.., .., 1, 1].add_(eye(rank));
            }
            init.zeros_(adapter_conv.bias!);
            init.xavier_uniform_(adapter_down.weight!);
            init.zeros_(adapter_down.bias!);
            init.zeros_(adapter_up.weight!);
            init.zeros_(adapter_up.bias!);
        }
        RegisterComponents();
    }

    static Tensor QuickGelu(Tensor x) => x * sigmoid(1.702 * x);

    /// <summary>The prefix tokens are convolved as 1×1 maps of their own (below), apart from the patch grid.</summary>
    public override bool PrefixTokensStandAlone => true;

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (!layout.HasGrid) throw new PeftSharpException("convpass needs a patch grid (an image encoder)");
        long b = x.shape[0];
        int start = layout.PatchStart, h = layout.GridHeight, w = layout.GridWidth;
        var down = QuickGelu(adapter_down.forward(x));
        var parts = new List<Tensor>();
        if (start > 0)
        {
            // Each non-patch token is a 1×1 map (as in ConvPass), and with padding 1 only the kernel centre and the
            // bias touch it: that is a linear map. It is computed as one, because libtorch's conv2d backward for a 1×1
            // input with a 3×3 kernel sometimes returns uninitialised memory as the input gradient (measured: 9 of 200
            // calls non-finite), which made ConvPass diverge or collapse at random.
            var centre = adapter_conv.weight![.., .., 1, 1];
            parts.Add(nn.functional.linear(down[.., ..Math.Min(start, (int)x.shape[1])], centre, adapter_conv.bias));
        }
        if (x.shape[1] > start)   // else the block computes its leading prefix tokens alone
        {
            // A clip's frames are convolved as separate grids (the 2-D conv does not mix time).
            var patches = down[.., start..].reshape(b * layout.Frames, h, w, rank).permute(0, 3, 1, 2);
            parts.Add(adapter_conv.forward(patches).permute(0, 2, 3, 1).reshape(b, (long)layout.Frames * h * w, rank));
        }
        var mixed = dropout.forward(QuickGelu(cat(parts.ToArray(), 1)));
        return adapter_up.forward(mixed) * scale;
    }
}
