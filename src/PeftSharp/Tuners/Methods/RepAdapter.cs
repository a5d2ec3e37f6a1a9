using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// RepAdapter (Luo et al. 2023): sequential before the attention and before the MLP, on the LayerNorm output, purely
/// linear: x + s · B(Dropout(A x)), A a 1×1 conv D→r, B a 1×1 group conv r→D with 2 groups (keys conv_A, conv_B as in
/// its code). A Xavier, B zero. It re-parameterises into the following qkv / fc1 layer:
/// W' = W (I + s B A), b' = b + s W (B a + b_B). Parameters per adapter Dr + r + Dr/2 + D.
/// </summary>
public sealed class RepAdapter : TunerMethod
{
    public override CapacityKnob? Capacity => new("rank", ["8", "16"]);
    public override string Id => "repadapter";
    public override string Summary => "linear adapters before attention and MLP, merged into the next layer";
    public override string Reference => "Luo et al. 2023 (RepAdapter); groups = 2";
    public override bool Mergeable => true;
    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 8, new[] { 8, 16, 32 }, "hidden width r (even)"),
        HyperSpec.Double("scale", 1, new[] { 0.1, 0.5, 1, 5, 10 }, "scale s", min: 0),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout between A and B", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        int rank = h.Int("rank");
        if (rank % 2 != 0 || encoder.EmbedDim % 2 != 0)
            throw new PeftSharpException($"method 'repadapter': rank ({rank}) and width ({encoder.EmbedDim}) must be even for its 2-group conv");
        var attached = new List<(Block Block, string Name, RepAdapterLayer Module, Func<nn.Module> Next)>();
        foreach (var block in encoder.Blocks)
        {
            var b = block;
            foreach (var (name, point, next) in new (string, InsertionPoint, Func<nn.Module>)[]
                     { ("repadapter_attn", InsertionPoint.AttnInput, () => b.attn.qkv), ("repadapter_mlp", InsertionPoint.MlpInput, () => b.mlp.fc1) })
            {
                var module = new RepAdapterLayer(encoder.EmbedDim, rank, h.Double("scale"), h.Double("dropout"));
                block.Attach(name, module, point);
                attached.Add((block, name, module, next));
            }
        }
        return new Applied(this, h, encoder, attached);
    }

    sealed class Applied : AppliedTuner
    {
        readonly List<(Block Block, string Name, RepAdapterLayer Module, Func<nn.Module> Next)> attached;

        public Applied(TunerMethod m, Hyperparameters h, TunableEncoder e, List<(Block, string, RepAdapterLayer, Func<nn.Module>)> attached)
            : base(m, h, e) => this.attached = attached;

        public override int MergePhase => 1;
        public override IEnumerable<Parameter> TrainableParameters() => attached.SelectMany(a => a.Module.parameters());

        public override IEnumerable<Tensor> MergeTargets() => attached.SelectMany(a =>
        {
            var next = NextLinear(a.Next());
            return new Tensor[] { next.weight!, next.bias! };
        });

        protected override void FoldIntoBase()
        {
            foreach (var a in attached) a.Module.FoldInto(NextLinear(a.Next()));
        }

        protected override void OnMergedChanged(bool merged)
        {
            foreach (var a in attached) a.Module.Merged = merged;
        }

        public override void Detach()
        {
            foreach (var a in attached) a.Block.Tuners.Remove(a.Block, a.Name);
        }

        static Linear NextLinear(nn.Module m)
        {
            var linear = (Linear)ModuleWrapper.Unwrap(m);
            if (linear.bias is null) throw new PeftSharpException("cannot merge RepAdapter into a layer without bias (qkv_bias=false)");
            return linear;
        }
    }
}

public sealed class RepAdapterLayer : BlockTuner
{
    public Conv1d conv_A;
    public Conv1d conv_B;
    public ParallelDropout dropout;
    readonly double scale;
    readonly int groups = 2;

    public RepAdapterLayer(int dim, int rank, double scale, double dropoutRate) : base("RepAdapter")
    {
        this.scale = scale;
        conv_A = Conv1d(dim, rank, 1, bias: true);
        conv_B = Conv1d(rank, dim, 1, groups: groups, bias: true);
        dropout = new ParallelDropout(dropoutRate);
        using (no_grad())
        {
            init.xavier_uniform_(conv_A.weight!);
            init.zeros_(conv_A.bias!);
            init.zeros_(conv_B.weight!);
            init.zeros_(conv_B.bias!);
        }
        RegisterComponents();
    }

    public bool Merged { get; set; }

    public override bool PrefixTokensStandAlone => true;   // token by token

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (Merged) return x;
        // The 1×1 convs as matrix products on [B, N, C], without the [B, C, N] transposes.
        var hidden = dropout.forward(F.linear(x, conv_A.weight!.squeeze(-1), conv_A.bias));
        return x + F.linear(hidden, FullB(), conv_B.bias) * scale;
    }

    /// <summary>The grouped conv_B as one block-diagonal [D, r] matrix.</summary>
    Tensor FullB()
    {
        var w = conv_B.weight!.squeeze(-1);                 // [D, r/groups]
        long outPerGroup = w.shape[0] / groups, inPerGroup = w.shape[1];
        var full = zeros(w.shape[0], inPerGroup * groups, dtype: w.dtype, device: w.device);
        for (int g = 0; g < groups; g++)
            full[(int)(g * outPerGroup)..(int)((g + 1) * outPerGroup), (int)(g * inPerGroup)..(int)((g + 1) * inPerGroup)] =
                w[(int)(g * outPerGroup)..(int)((g + 1) * outPerGroup)];
        return full;
    }

    /// <summary>next(x + s(B(Ax + a) + b)) = W(I + sBA)x + [b_next + sW(Ba + b)].</summary>
    internal void FoldInto(Linear next)
    {
        var a = conv_A.weight!.squeeze(-1);
        var bFull = FullB();
        var w = next.weight!;
        var offset = (bFull.matmul(conv_A.bias!) + conv_B.bias!) * scale;
        var newBias = next.bias! + w.matmul(offset);
        var newWeight = w + w.matmul(bFull.matmul(a)) * scale;
        w.copy_(newWeight);
        next.bias!.copy_(newBias);
    }
}
