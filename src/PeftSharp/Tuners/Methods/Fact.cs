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
                                       Tucker ? (section => shared.TuckerCore(layer, section, ratio)) : null);
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
    public override string Id => "fact-tt";
    public override string Summary => "FacT tensor-train: shared U, V and per-layer cores";
    protected override bool Tucker => false;
    protected override int DefaultRank => 8;
    protected override int[] RankGrid => new[] { 8, 16, 32 };
}

public sealed class FactTk : FactBase
{
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

    /// <summary>The Tucker core of one layer's section: C ×₃ P[:, (4+2R)·layer + section], a d×d matrix
    /// (sections 0..3 q,k,v,proj; then R for fc1 and R for fc2).</summary>
    public Tensor TuckerCore(int layer, int section, int ratio)
    {
        int perLayer = 4 + 2 * ratio;
        return core!.matmul(factor![.., perLayer * layer + section]);
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
    readonly Func<int, Tensor>? tuckerCore;

    /// <summary>Keeps the shared factors out of this module's registry (RegisterComponents registers Module fields).</summary>
    sealed class Shared
    {
        public Shared(FactFactors f) => Factors = f;
        public FactFactors Factors { get; }
    }

    public FactLinear(Module<Tensor, Tensor> baseLayer, FactLayerKind kind, FactFactors factors, double scale, double dropoutRate,
                      int ratio, Parameter[]? cores, Func<int, Tensor>? tuckerCore) : base("FactLinear", baseLayer)
    {
        this.kind = kind;
        shared = new Shared(factors);
        this.scale = scale;
        this.ratio = ratio;
        this.tuckerCore = tuckerCore;
        dropout = new ParallelDropout(dropoutRate);
        fact_cores = ParameterList(cores ?? Array.Empty<Parameter>());
        RegisterComponents();
    }

    public IEnumerable<Parameter> Cores => fact_cores;

    /// <summary>The core matrix M of a section, applied as u @ M.</summary>
    Tensor Core(int section)
    {
        if (tuckerCore is null) return fact_cores[section];
        int d = (int)shared.Factors.u.weight!.shape[0];
        return kind switch
        {
            FactLayerKind.Qkv => tuckerCore(section),
            FactLayerKind.Proj => tuckerCore(3),
            // fc1: R slices side by side (chunk j of the output = slice 4+j); fc2: stacked (chunk j of the input).
            FactLayerKind.Fc1 => cat(Enumerable.Range(0, ratio).Select(j => tuckerCore(4 + j)).ToArray(), 1),
            _ => cat(Enumerable.Range(0, ratio).Select(j => tuckerCore(4 + ratio + j)).ToArray(), 0),
        };
    }

    public override Tensor forward(Tensor x) => Merged ? base_layer.forward(x) : OnRows(x, ForwardRows);

    Tensor ForwardRows(Tensor rows)
    {
        var f = shared.Factors;
        var y = base_layer.forward(rows);
        // The low-dimensional activations t (after the core and its dropout) and how many d-wide chunks they hold; each
        // chunk maps through v into its own slice of the output.
        Tensor t;
        int chunks;
        switch (kind)
        {
            case FactLayerKind.Qkv:
                // q, k and v in one pass: u(x) @ [M_q | M_k | M_v], one (elementwise) dropout.
                (t, chunks) = (dropout.forward(f.u.forward(rows).matmul(cat(new[] { Core(0), Core(1), Core(2) }, 1))), 3);
                break;
            case FactLayerKind.Proj:
                (t, chunks) = (dropout.forward(f.u.forward(rows).matmul(Core(0))), 1);
                break;
            case FactLayerKind.Fc1:
                (t, chunks) = (dropout.forward(f.u.forward(rows).matmul(Core(0))), ratio);
                break;
            default:
                var u = f.u.forward(SplitLast(rows, ratio)).flatten(-2);
                (t, chunks) = (dropout.forward(u.matmul(Core(0))), 1);
                break;
        }
        // y += s · v(t) chunk by chunk as one accumulating product: row (r, j) of y viewed as [rows·chunks, out/chunks]
        // is chunk j of row r, and likewise for t, so no output-sized increment is written and read back.
        var vt = f.v.weight!.t().to(y.dtype);   // in-place products are not autocast: match bf16 by hand
        long outFeatures = y.shape[1];
        return chunks == 1
            ? y.addmm_(t, vt, beta: 1, alpha: (float)scale)   // in place: the base layer's backward does not need its output
            : y.view(-1, outFeatures / chunks).addmm(t.reshape(-1, t.shape[1] / chunks), vt, beta: 1, alpha: (float)scale)
                .view(-1, outFeatures);
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
    public Tensor DeltaWeight()
    {
        var f = shared.Factors;
        Tensor U = f.u.weight!, V = f.v.weight!;
        Tensor Block(Tensor m) => V.matmul(m.t()).matmul(U);
        int d = (int)U.shape[0];
        Tensor delta = kind switch
        {
            FactLayerKind.Qkv => cat(Enumerable.Range(0, 3).Select(j => Block(Core(j))).ToArray(), 0),
            FactLayerKind.Proj => Block(Core(0)),
            FactLayerKind.Fc1 => cat(Enumerable.Range(0, ratio).Select(j => Block(Core(0)[.., (j * d)..((j + 1) * d)])).ToArray(), 0),
            _ => cat(Enumerable.Range(0, ratio).Select(j => Block(Core(0)[(j * d)..((j + 1) * d)])).ToArray(), 1),
        };
        return delta * scale;
    }
}
