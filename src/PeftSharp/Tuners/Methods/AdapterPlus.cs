using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// Adapter+ (Steitz &amp; Roth, "Adapters Strike Back", CVPR 2024; visinf/adapter_plus, adapter_plus/vit_adapter.py with
/// conf/adapter/adapter_plus.yaml): one bottleneck adapter after the whole block ("post" position),
/// x ← x + s ⊙ DropPath(W_up GELU(W_down x + b_down) + b_up), with a learned channel-wise scale s ∈ ℝᴰ (init 1), no
/// LayerNorm, drop-path 0.1 on the adapter branch. Weights trunc-normal std 0.01 cut at ±0.02 (the paper's Houlsby
/// init), biases zero: the up-projection is not zero, so the model starts near, not at, the base. Not mergeable
/// (GELU). Parameters per block 2Dr + r + 2D.
/// </summary>
public sealed class AdapterPlus : TunerMethod
{
    public override CapacityKnob? Capacity => new("rank", ["4", "8"], ["1", "4", "8", "16", "32"]);
    public override string Id => "adapter-plus";
    public override string Summary => "bottleneck adapter after each block with a channel-wise scale and drop-path";
    public override bool Mergeable => false;
    public override string Reference => "Steitz & Roth, CVPR 2024 (Adapter+); visinf/adapter_plus (post, channel scaling, Houlsby init)";
    public override PublishedFigure? Published => new(77.6, null, "Steitz & Roth 2024 (group means, last epoch, rank 8 or per-task 1–32)");

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 8, new[] { 1, 2, 4, 8, 16, 32 }, "bottleneck width r"),
        HyperSpec.Double("drop_path", 0.1, Array.Empty<double>(), "drop-path rate on the adapter branch", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) =>
        HookTuner.PerBlock(this, h, encoder, new[] { ("adapter_plus", new[] { InsertionPoint.BlockOutput }) },
                           _ => new AdapterPlusLayer(encoder.EmbedDim, h.Int("rank"), h.Double("drop_path")));
}

/// <summary>x + s ⊙ DropPath(Up(GELU(Down(x)))), token by token.</summary>
public sealed class AdapterPlusLayer : BlockTuner
{
    /// <summary>Houlsby et al.'s init as Adapter+ uses it: std 0.01, cut at two standard deviations.</summary>
    const double InitStd = 0.01;

    public Linear down;
    public Linear up;
    public Parameter scaling;
    public DropPath drop_path;

    public AdapterPlusLayer(int dim, int rank, double dropPath) : base("AdapterPlus")
    {
        down = Linear(dim, rank);
        up = Linear(rank, dim);
        scaling = new Parameter(ones(dim));
        drop_path = new DropPath(dropPath);
        using (no_grad())
        {
            InitWeights.TruncNormal(down.weight!, InitStd, -2 * InitStd, 2 * InitStd);
            InitWeights.TruncNormal(up.weight!, InitStd, -2 * InitStd, 2 * InitStd);
            init.zeros_(down.bias!);
            init.zeros_(up.bias!);
        }
        RegisterComponents();
    }

    public override bool PrefixTokensStandAlone => true;   // token by token

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        var branch = up.forward(nn.functional.gelu(down.forward(x)));
        return x.addcmul(drop_path.forward(branch), scaling, 1);
    }
}
