using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// Bottleneck adapters as the unifying study builds them (one Adapter class, three placements):
/// out = s · Up(Dropout(ReLU(Down(x)))), added to x when sequential. Pfeiffer: after the MLP; Houlsby: after the
/// attention and after the MLP; AdaptFormer: parallel to the MLP, fed the block's pre-LayerNorm stream.
/// Parameters per adapter 2Dr + r + D.
/// </summary>
public abstract class BottleneckAdapterMethod : TunerMethod
{
    public override bool Mergeable => false;
    protected abstract int DefaultRank { get; }
    protected abstract int[] RankGrid { get; }
    protected abstract double DefaultScale { get; }
    protected abstract double[] ScaleGrid { get; }
    protected abstract AdapterInit Init { get; }
    /// <summary>(name in the block, insertion point) of each adapter a block gets.</summary>
    protected abstract (string Name, InsertionPoint Point)[] Placements { get; }

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", DefaultRank, RankGrid, "bottleneck width r"),
        HyperSpec.Double("scale", DefaultScale, ScaleGrid, "output scale s", min: 0),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout inside the bottleneck", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var placements = Placements.Select(p => (p.Name, new[] { p.Point })).ToList();
        return HookTuner.PerBlock(this, h, encoder, placements, p =>
            new BottleneckAdapter(encoder.EmbedDim, h.Int("rank"), h.Double("scale"), h.Double("dropout"), Init,
                                  sequential: p.Points[0] is InsertionPoint.AttnOutput or InsertionPoint.MlpOutput));
    }
}

public enum AdapterInit { XavierDownZeroUp, XavierBoth, KaimingDownZeroUp }

public sealed class PfeifferAdapter : BottleneckAdapterMethod
{
    public override string Id => "adapter-pfeiffer";
    public override string Summary => "sequential bottleneck adapter after the MLP";
    public override string Reference => "Pfeiffer et al. 2021; the unifying study's Adapter (Xavier down, zero up)";
    protected override int DefaultRank => 8;
    protected override int[] RankGrid => new[] { 4, 8, 16, 32, 64 };
    protected override double DefaultScale => 1;
    protected override double[] ScaleGrid => new[] { 0.01, 0.1, 1, 10 };
    protected override AdapterInit Init => AdapterInit.XavierDownZeroUp;
    protected override (string, InsertionPoint)[] Placements => new[] { ("adapter_mlp", InsertionPoint.MlpOutput) };
}

public sealed class HoulsbyAdapter : BottleneckAdapterMethod
{
    public override string Id => "adapter-houlsby";
    public override string Summary => "sequential bottleneck adapters after the attention and after the MLP";
    public override string Reference => "Houlsby et al. 2019; the unifying study's Adapter (Xavier both, biases N(0, 1e-6))";
    protected override int DefaultRank => 8;
    protected override int[] RankGrid => new[] { 4, 8, 16, 32 };
    protected override double DefaultScale => 1;
    protected override double[] ScaleGrid => new[] { 0.01, 0.1, 1, 10 };
    protected override AdapterInit Init => AdapterInit.XavierBoth;
    protected override (string, InsertionPoint)[] Placements => new[]
    {
        ("adapter_attn", InsertionPoint.AttnOutput), ("adapter_mlp", InsertionPoint.MlpOutput),
    };
}

public sealed class AdaptFormer : BottleneckAdapterMethod
{
    public override string Id => "adaptformer";
    public override string Summary => "bottleneck adapter parallel to the MLP, fed the pre-LayerNorm stream";
    public override string Reference => "Chen et al., NeurIPS 2022 (AdaptFormer); LoRA-style init";
    protected override int DefaultRank => 16;
    protected override int[] RankGrid => new[] { 4, 16, 32 };
    protected override double DefaultScale => 0.1;
    protected override double[] ScaleGrid => new[] { 0.05, 0.1, 0.2 };
    protected override AdapterInit Init => AdapterInit.KaimingDownZeroUp;
    protected override (string, InsertionPoint)[] Placements => new[] { ("adaptformer", InsertionPoint.MlpParallelResidual) };
}

/// <summary>Down (D→r) → ReLU → dropout → Up (r→D), times s; plus the input when sequential.</summary>
public sealed class BottleneckAdapter : BlockTuner
{
    public Linear down;
    public Linear up;
    public ParallelDropout dropout;
    readonly double scale;
    readonly bool sequential;

    public BottleneckAdapter(int dim, int rank, double scale, double dropoutRate, AdapterInit initKind, bool sequential) : base("Adapter")
    {
        down = Linear(dim, rank);
        up = Linear(rank, dim);
        dropout = new ParallelDropout(dropoutRate);
        this.scale = scale;
        this.sequential = sequential;
        using (no_grad())
        {
            switch (initKind)
            {
                case AdapterInit.XavierDownZeroUp:
                    init.xavier_uniform_(down.weight!);
                    init.zeros_(down.bias!);
                    init.zeros_(up.weight!);
                    init.zeros_(up.bias!);
                    break;
                case AdapterInit.XavierBoth:
                    init.xavier_uniform_(down.weight!);
                    init.xavier_uniform_(up.weight!);
                    init.normal_(down.bias!, std: 1e-6);
                    init.normal_(up.bias!, std: 1e-6);
                    break;
                default:
                    init.kaiming_uniform_(down.weight!, a: Math.Sqrt(5));
                    init.zeros_(down.bias!);
                    init.zeros_(up.weight!);
                    init.zeros_(up.bias!);
                    break;
            }
        }
        RegisterComponents();
    }

    public override bool PrefixTokensStandAlone => true;   // token by token

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        var y = up.forward(dropout.forward(functional.relu(down.forward(x)))) * scale;
        return sequential ? x + y : y;
    }
}
