using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// FacT (Jie &amp; Deng, AAAI 2023): the weight increments of every block's q, k, v, proj, fc1 and fc2 are factorised
/// with a shared U (D→d, "fact.u") and V (d→D, "fact.v", zero init) and small per-layer cores:
/// ΔW = s · V Mᵀ U with dropout 0.1 on the core output. FacT-TT learns each core (d×d for q,k,v,proj; d×Rd for fc1
/// and Rd×d for fc2, R the MLP ratio); FacT-TK derives them from one core tensor C (d×d×d) and a factor
/// P (d × (4+2R)·L). Parameters: 2Dd + 12L·d² (TT), 2Dd + d³ + 12L·d (TK), for R = 4.
/// </summary>
public abstract class FactBase : TunerMethod
{
    public override bool Mergeable => true;
    public override string Reference => "Jie & Deng, AAAI 2023 (FacT); placement and counts as in the unifying study";
    protected abstract bool Tucker { get; }
    protected abstract int DefaultRank { get; }
    protected abstract int[] RankGrid { get; }

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", DefaultRank, RankGrid, "FacT dimension d"),
        HyperSpec.Double("scale", 1.0, new[] { 0.01, 0.1, 1, 10, 100 }, "scale s of the increments", min: 0),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout on the core output", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        int d = h.Int("rank"), dim = encoder.EmbedDim, depth = encoder.Blocks.Count;
        int ratio = MlpChunks(encoder);
        if (d > dim) throw new PeftSharpException($"method '{Id}': rank {d} exceeds the embedding width {dim}");
        var shared = new FactFactors(dim, d, Tucker ? (4 + 2 * ratio) * depth : 0);
        encoder.Root.register_module("fact", shared);
        var wrappers = new List<FactLinear>();
        for (int l = 0; l < depth; l++)
        {
            var block = encoder.Blocks[l];
            int layer = l;
            FactLinear Wrap(string path, FactLayerKind kind)
            {
                var module = (Module<Tensor, Tensor>)ModuleSurgery.Find(block, path)!;
                var cores = Tucker ? null : TensorTrainCores(kind, d, ratio);
                var w = new FactLinear(module, kind, shared, h.Double("scale"), h.Double("dropout"), ratio, cores,
                                       Tucker ? ((first, count, stacked) => shared.TuckerCores(layer, first, count, stacked, ratio)) : null);
                ModuleSurgery.ReplaceAt(block, path, w);
                return w;
            }
            wrappers.Add(Wrap("attn.qkv", FactLayerKind.Qkv));
            wrappers.Add(Wrap("attn.proj", FactLayerKind.Proj));
            wrappers.Add(Wrap("mlp.fc1", FactLayerKind.Fc1));
            wrappers.Add(Wrap("mlp.fc2", FactLayerKind.Fc2));
        }
        return new FactTuner(this, h, encoder, wrappers, shared);
    }

    static int MlpChunks(TunableEncoder encoder)
    {
        var fc1 = (Linear)ModuleWrapper.Unwrap(encoder.Blocks[0].mlp.fc1);
        long hidden = fc1.weight!.shape[0];
        if (hidden % encoder.EmbedDim != 0)
            throw new PeftSharpException($"FacT needs an MLP width that is a multiple of the embedding width (got {hidden} for {encoder.EmbedDim})");
        return (int)(hidden / encoder.EmbedDim);
    }

    /// <summary>TT cores as u @ M matrices, initialised like nn.Linear (uniform ±1/√fan_in).</summary>
    static Parameter[] TensorTrainCores(FactLayerKind kind, int d, int ratio)
    {
        Parameter Core(int rows, int cols) => new(empty(rows, cols).uniform_(-1.0 / Math.Sqrt(rows), 1.0 / Math.Sqrt(rows)));
        return kind switch
        {
            FactLayerKind.Qkv => new[] { Core(d, d), Core(d, d), Core(d, d) },
            FactLayerKind.Proj => new[] { Core(d, d) },
            FactLayerKind.Fc1 => new[] { Core(d, ratio * d) },
            _ => new[] { Core(ratio * d, d) },
        };
    }

    sealed class FactTuner : AppliedTuner
    {
        readonly List<FactLinear> wrappers;
        readonly FactFactors shared;

        public FactTuner(TunerMethod m, Hyperparameters h, TunableEncoder e, List<FactLinear> wrappers, FactFactors shared) : base(m, h, e)
        {
            this.wrappers = wrappers;
            this.shared = shared;
        }

        public override IEnumerable<Parameter> TrainableParameters() => shared.parameters().Concat(wrappers.SelectMany(w => w.Cores));
        public override IEnumerable<Tensor> MergeTargets() => wrappers.Select(w => (Tensor)w.InnermostLinear.weight!);

        protected override void FoldIntoBase()
        {
            foreach (var w in wrappers) w.InnermostLinear.weight!.add_(w.DeltaWeight());
        }

        protected override void OnMergedChanged(bool merged)
        {
            foreach (var w in wrappers) w.Merged = merged;
        }

        public override void Detach() => ModuleSurgery.Unregister(Encoder.Root, "fact");
    }
}

public sealed class FactTt : FactBase
{
    public override CapacityKnob? Capacity => new("rank", ["8", "16"]);
    public override string Id => "fact-tt";
    public override string Summary => "FacT tensor-train: shared U, V and per-layer cores";
    protected override bool Tucker => false;
    protected override int DefaultRank => 8;
    protected override int[] RankGrid => new[] { 8, 16, 32 };
}

public sealed class FactTk : FactBase
{
    public override CapacityKnob? Capacity => new("rank", ["16", "32"], ["4", "8", "16", "32", "64"]);
    public override string Id => "fact-tk";
    public override string Summary => "FacT Tucker: shared U, V, one core tensor and a layer factor";
    protected override bool Tucker => true;
    protected override int DefaultRank => 32;
    protected override int[] RankGrid => new[] { 16, 32, 64 };
}

public enum FactLayerKind { Qkv, Proj, Fc1, Fc2 }

/// <summary>The factors FacT shares across the encoder: u (D→d), v (d→D, zero init), and for Tucker core C, factor P.</summary>
public sealed class FactFactors : Module
{
    public Linear u;
    public Linear v;
    public Parameter? core;
    public Parameter? factor;

    public FactFactors(int dim, int d, int tuckerSlices) : base("FactFactors")
    {
        u = Linear(dim, d, hasBias: false);
        v = Linear(d, dim, hasBias: false);
        using (no_grad()) init.zeros_(v.weight!);
        if (tuckerSlices > 0)
        {
            core = new Parameter(empty(d, d, d));
            factor = new Parameter(empty(d, tuckerSlices));
            using (no_grad())
            {
                init.xavier_uniform_(core);
                init.xavier_uniform_(factor);
            }
        }
        RegisterComponents();
    }

    /// <summary>The Tucker cores of <paramref name="count"/> consecutive sections of one layer, C ×₃ P[:, (4+2R)·layer +
    /// section] (d×d each; sections 0..3 q,k,v,proj, then R for fc1 and R for fc2), side by side ([d, count·d]) or
    /// <paramref name="stacked"/> ([count·d, d]). One product for the run of sections: deriving them one at a time
    /// cost about 17 ms of autograd bookkeeping per ViT-Tiny training step.</summary>
    public Tensor TuckerCores(int layer, int first, int count, bool stacked, int ratio)
    {
        long d = core!.shape[0];
        int column = (4 + 2 * ratio) * layer + first;
        var slices = core.reshape(d * d, d).mm(factor![.., column..(column + count)]).view(d, d, count);   // [i, j, section]
        return stacked
            ? slices.permute(2, 0, 1).reshape(count * d, d)    // row block k = section k
            : slices.permute(0, 2, 1).reshape(d, count * d);   // column block k = section k
    }
}

/// <summary>A Linear with a FacT increment; holds the shared factors by reference (they are registered once, at the root).</summary>
public sealed class FactLinear : ModuleWrapper
{
    public ParameterList fact_cores;
    readonly FactLayerKind kind;
    readonly Shared shared;
    readonly double scale;
    readonly ParallelDropout dropout;
    readonly int ratio;
    readonly Func<int, int, bool, Tensor>? tuckerCores;

    /// <summary>Keeps the shared factors out of this module's registry (RegisterComponents registers Module fields).</summary>
    sealed class Shared
    {
        public Shared(FactFactors f) => Factors = f;
        public FactFactors Factors { get; }
    }

    public FactLinear(Module<Tensor, Tensor> baseLayer, FactLayerKind kind, FactFactors factors, double scale, double dropoutRate,
                      int ratio, Parameter[]? cores, Func<int, int, bool, Tensor>? tuckerCores) : base("FactLinear", baseLayer)
    {
        this.kind = kind;
        shared = new Shared(factors);
        this.scale = scale;
        this.ratio = ratio;
        this.tuckerCores = tuckerCores;
        dropout = new ParallelDropout(dropoutRate);
        fact_cores = ParameterList(cores ?? Array.Empty<Parameter>());
        RegisterComponents();
    }

    public IEnumerable<Parameter> Cores => fact_cores;

    /// <summary>M of the whole layer, [inChunks·d, outChunks·d], applied as u(x) @ M: q, k and v side by side for qkv
    /// (one pass for the three), fc1's R slices side by side (output chunk j), fc2's stacked (input chunk j).</summary>
    Tensor CoreMatrix()
    {
        if (tuckerCores is null) return kind == FactLayerKind.Qkv ? cat(fact_cores.Cast<Tensor>().ToArray(), 1) : fact_cores[0];
        return kind switch
        {
            FactLayerKind.Qkv => tuckerCores(0, 3, false),
            FactLayerKind.Proj => tuckerCores(3, 1, false),
            FactLayerKind.Fc1 => tuckerCores(4, ratio, false),
            _ => tuckerCores(4 + ratio, ratio, true),
        };
    }

    public override Tensor forward(Tensor x) => Merged ? base_layer.forward(x) : OnRows(x, ForwardRows);

    Tensor ForwardRows(Tensor rows)
    {
        bool fusable = LowRankUpdate.Fusable(base_layer, rows);
        // Nothing to differentiate and no dropout: the increment folds into the weight, one product per layer, where
        // the rows outweigh the weight.
        if (fusable && !is_grad_enabled() && !dropout.Active
            && LowRankUpdate.FoldingPays(rows, (Linear)base_layer, rank: shared.Factors.u.weight!.shape[0]))
        {
            var linear = (Linear)base_layer;
            return LowRankUpdate.Affine(rows, Increment(linear.weight!), linear.bias);
        }
        var v = shared.Factors.v.weight!;
        if (fusable)
        {
            double p = dropout.Active ? dropout.P : 0;
            return kind is FactLayerKind.Proj or FactLayerKind.Fc2
                ? LowRankUpdate.Factored(rows, (Linear)base_layer, DownThroughCore(), null, p, v, scale)
                : LowRankUpdate.Factored(rows, (Linear)base_layer, shared.Factors.u.weight!, CoreMatrix(), p, v, scale);
        }
        var t = LowDimensional(rows);
        var y = BaseOutputToUpdate(rows);
        // y += s · v(t) chunk by chunk as one accumulating product: row (r, j) of y viewed as [rows·chunks, out/chunks]
        // is chunk j of row r, and likewise for t, so no output-sized increment is written and read back.
        var vt = v.t().to(y.dtype).contiguous();   // in-place products are not autocast: match bf16 by hand
        long chunks = t.shape[1] / vt.shape[0], outFeatures = y.shape[1];
        return chunks == 1
            ? y.addmm_(t, vt, beta: 1, alpha: (float)scale)
            : y.view(-1, outFeatures / chunks).addmm(t.reshape(-1, vt.shape[0]), vt, beta: 1, alpha: (float)scale)
                .view(-1, outFeatures);
    }

    /// <summary>The low-dimensional activations t = dropout(u(x) M), [rows, chunks·d]: each d-wide chunk maps through v
    /// into its own slice of the output (q, k, v; fc1's R slices), and fc2 reads its input as R slices of u's width.</summary>
    Tensor LowDimensional(Tensor rows)
    {
        var u = shared.Factors.u;
        var lowIn = kind == FactLayerKind.Fc2 ? u.forward(SplitLast(rows, ratio)).flatten(-2) : u.forward(rows);
        return dropout.forward(lowIn.matmul(CoreMatrix()));
    }

    /// <summary>u and M as one [d, in] matrix for a layer with one output chunk (proj, fc2): input chunk j of x maps
    /// through column block j, M_jᵀ u, so down(x) M is one product. Dropout sits after M, so M can fold into u but not
    /// into v; for fc2 this drops the [rows, R·d] intermediate and its three core products (about 4 % of FacT-TK's
    /// arithmetic at d = 32 on ViT-Tiny).</summary>
    Tensor DownThroughCore()
    {
        var u = shared.Factors.u.weight!;
        long d = u.shape[0];
        var m = CoreMatrix();   // [inChunks·d, d]
        long inChunks = m.shape[0] / d;
        return inChunks == 1
            ? m.t().mm(u)
            : m.view(inChunks, d, d).transpose(1, 2).matmul(u).permute(1, 0, 2).reshape(d, inChunks * u.shape[1]);
    }

    /// <summary>[..., n] → [..., parts, n / parts].</summary>
    static Tensor SplitLast(Tensor t, int parts)
    {
        var shape = t.shape.ToList();
        long last = shape[^1];
        shape[^1] = parts;
        shape.Add(last / parts);
        return t.reshape(shape.ToArray());
    }

    /// <summary>s · V Mᵀ U per section, laid out as the wrapped layer's [out, in] weight.</summary>
    public Tensor DeltaWeight() => Increment(null);

    /// <summary>s · V Mᵀ U laid out as the layer's weight, or W + s · V Mᵀ U with <paramref name="weight"/> W, as one
    /// (batched) product after the factors: output chunk j of qkv and fc1 is row block j, V (M_jᵀ U), with M_j column
    /// block j of M; input chunk j of fc2 is column block j, V (M_jᵀ U) with M_j row block j, so V multiplies
    /// <see cref="DownThroughCore"/> (proj too).</summary>
    Tensor Increment(Tensor? weight)
    {
        var v = shared.Factors.v.weight!;
        float s = (float)scale;
        if (kind is FactLayerKind.Proj or FactLayerKind.Fc2)
        {
            var down = DownThroughCore();
            return weight is null ? v.mm(down).mul_(s) : weight.addmm(v, down, beta: 1, alpha: s);
        }
        var u = shared.Factors.u.weight!;
        long d = u.shape[0], inFeatures = u.shape[1];
        var downs = CoreMatrix().t().mm(u).view(-1, d, inFeatures);   // [chunks, d, in]: M_jᵀ U
        // Not baddbmm: TorchSharp 0.107's Tensor.baddbmm passes its operands to libtorch in a rotated order.
        var blocks = v.matmul(downs).view(-1, inFeatures);
        return weight is null ? blocks.mul_(s) : weight.add(blocks, alpha: s);
    }
}
