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
                                  sequential: p.Points[0] is InsertionPoint.AttnOutput or InsertionPoint.MlpOutput
                                                          or InsertionPoint.AttnInput or InsertionPoint.MlpInput));
    }
}

/// <summary>The unifying study's adapter inits (model/utils.py init_weight): lora_xavier, xavier, lora_kaiming, and
/// "zero" as its code does it: down weight and up bias zero, the down bias and up weight left at PyTorch's default
/// (so the adapter's output is not zero at start).</summary>
public enum AdapterInit { XavierDownZeroUp, XavierBoth, KaimingDownZeroUp, StudyZero }

/// <summary>
/// The unifying study's adapter design space (Mai et al., CVPR 2025; model/block.py and model/adapter.py of its code)
/// as options of one method: where the adapter sits on each branch (ft_attn_mode / ft_mlp_mode: sequential before the
/// sublayer, sequential after it, or parallel to it), for a parallel adapter whether it is fed the stream before the
/// branch's LayerNorm or after it (ft_*_ln), the init (zero, xavier, lora = Kaiming down and zero up, lora-xavier),
/// and a fixed or learnable scaler (adapter_scaler: a number or learnable_scalar). The default is the Houlsby
/// placement (both branches, after the sublayer, Xavier). Sequential-before adds its input back (x + s·adapter(x));
/// the study's code feeds the sublayer the adapter's output alone there, which it runs only with RepAdapter, whose
/// module adds the residual itself. A learnable scaler starts at `scale` (the study starts it at 1, the default).
/// Parameters per adapter 2Dr + r + D (+1 with a learnable scaler).
/// </summary>
public sealed class DesignSpaceAdapter : TunerMethod
{
    public override CapacityKnob? Capacity => new("rank", ["4", "16"]);
    static readonly string[] Positions = { "before", "after", "parallel" };
    static readonly string[] Inputs = { "before", "after" };
    static readonly Dictionary<string, AdapterInit> Inits = new()
    {
        ["zero"] = AdapterInit.StudyZero, ["xavier"] = AdapterInit.XavierBoth,
        ["lora"] = AdapterInit.KaimingDownZeroUp, ["lora-xavier"] = AdapterInit.XavierDownZeroUp,
    };
    static readonly string[] Branches = { "attn", "mlp" };

    public override string Id => "adapter";
    public override string Summary => "the unifying study's adapter design space: position, LayerNorm side, init and scaler as options";
    public override bool Mergeable => false;
    public override string Reference => "Mai et al., CVPR 2025: the study code's Adapter (ft_*_mode, ft_*_ln, adapter_init, adapter_scaler)";

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 8, new[] { 4, 8, 16, 32, 64 }, "bottleneck width r"),
        HyperSpec.List("position", "after", "before (sequential, on the LayerNorm output), after (sequential, on the sublayer's output) or parallel"),
        HyperSpec.List("ln", "before", "parallel only: feed the stream before the branch's LayerNorm (AdaptFormer) or after it"),
        HyperSpec.List("init", "xavier", "zero, xavier, lora (Kaiming down, zero up) or lora-xavier (Xavier down, zero up)"),
        HyperSpec.Double("scale", 1, new[] { 0.01, 0.1, 1, 10 }, "output scale s (the start value when learnable)", min: 0),
        HyperSpec.Bool("learnable_scale", false, "learn one scalar s per adapter (the study's learnable_scalar)"),
        HyperSpec.List("branches", "attn,mlp", "the branches that get an adapter: attn, mlp or both"),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout inside the bottleneck", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        string position = One(h, "position", Positions), ln = One(h, "ln", Inputs), init = One(h, "init", Inits.Keys.ToArray());
        var branches = h.List("branches");
        foreach (var b in branches.Where(b => !Branches.Contains(b)))
            throw new PeftSharpException($"method '{Id}': 'branches' entries must be attn or mlp, got '{b}'");
        var placements = branches.Distinct().Select(b => ($"adapter_{b}", new[] { Point(b == "attn", position, ln) })).ToList();
        return HookTuner.PerBlock(this, h, encoder, placements, p =>
            new BottleneckAdapter(encoder.EmbedDim, h.Int("rank"), h.Double("scale"), h.Double("dropout"), Inits[init],
                                  sequential: position != "parallel", learnableScale: h.Bool("learnable_scale")));
    }

    /// <summary>The block's insertion point for a branch: sequential before = the sublayer's input (the LayerNorm
    /// output), after = its output; parallel = fed the pre-LayerNorm stream (ln before) or the LayerNorm output.</summary>
    static InsertionPoint Point(bool attn, string position, string ln) => (position, ln) switch
    {
        ("before", _) => attn ? InsertionPoint.AttnInput : InsertionPoint.MlpInput,
        ("after", _) => attn ? InsertionPoint.AttnOutput : InsertionPoint.MlpOutput,
        (_, "before") => attn ? InsertionPoint.AttnParallelResidual : InsertionPoint.MlpParallelResidual,
        _ => attn ? InsertionPoint.AttnParallelNormed : InsertionPoint.MlpParallelNormed,
    };

    string One(Hyperparameters h, string name, string[] allowed)
    {
        var values = h.List(name);
        if (values.Length != 1 || !allowed.Contains(values[0]))
            throw new PeftSharpException($"method '{Id}': '{name}' must be one of {string.Join(", ", allowed)}, got '{string.Join(",", values)}'");
        return values[0];
    }
}

public sealed class PfeifferAdapter : BottleneckAdapterMethod
{
    public override CapacityKnob? Capacity => new("rank", ["4", "16"], ["1", "4", "16", "64", "128"]);
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
    public override CapacityKnob? Capacity => new("rank", ["4", "16"], ["1", "4", "16", "64", "128"]);
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
    public override CapacityKnob? Capacity => new("rank", ["4", "16"]);
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

/// <summary>Down (D→r) → ReLU → dropout → Up (r→D), times s (fixed, or a learned scalar); plus the input when
/// sequential.</summary>
public sealed class BottleneckAdapter : BlockTuner
{
    public Linear down;
    public Linear up;
    public ParallelDropout dropout;
    /// <summary>The learned scalar s, when learnable (the study's learnable_scalar); else null and s is fixed.</summary>
    public Parameter? scaler;
    readonly double scale;
    readonly bool sequential;

    public BottleneckAdapter(int dim, int rank, double scale, double dropoutRate, AdapterInit initKind, bool sequential,
                             bool learnableScale = false) : base("Adapter")
    {
        down = Linear(dim, rank);
        up = Linear(rank, dim);
        dropout = new ParallelDropout(dropoutRate);
        this.scale = scale;
        this.sequential = sequential;
        if (learnableScale) scaler = new Parameter(full(1, scale));
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
                case AdapterInit.StudyZero:
                    // Down bias and up weight keep nn.Linear's default (Kaiming-uniform weight, uniform bias).
                    init.zeros_(down.weight!);
                    init.zeros_(up.bias!);
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
        var branch = up.forward(dropout.forward(functional.relu(down.forward(x))));
        var y = scaler is null ? branch * scale : branch * scaler;
        return sequential ? x + y : y;
    }
}
