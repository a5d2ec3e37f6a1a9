using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// Hydra (Kim et al., "Hydra: Multi-head Low-rank Adaptation for Parameter Efficient Fine-tuning", Neural Networks
/// 2024; extremebird/Hydra, vtab1k/hydra.py): on attn.proj and mlp.fc2 (W₀, input u) a parallel and a sequential
/// low-rank branch, y = W₀u + b₀ + s·Par(u) + s·Seq(W₀u + b₀), each branch Linear(d→r, bias) → dropout →
/// Linear(r→D, bias) with no activation, down Xavier-uniform, up and biases zero (so the model starts as the base).
/// Being linear on the frozen path it folds into the layer: W' = W₀ + s(W_par + W_seq W₀),
/// b' = b₀ + s(b_par + W_seq b₀ + b_seq) (the authors' merge code reads fc2 for the attention layer; this folds each
/// layer into itself). Parameters per block (ViT-B) 8452r + 3072.
/// </summary>
public sealed class Hydra : TunerMethod
{
    public override IReadOnlyDictionary<string, string[]> OtherBenchKnobs => new Dictionary<string, string[]> { ["scale"] = ["0.1", "1"] };
    public override CapacityKnob? Capacity => new("rank", ["1", "2"], ["1", "2", "4", "8", "16"]);
    public override string Id => "hydra";
    public override string Summary => "parallel + sequential low-rank branches on attn.proj and mlp.fc2, merged into them";
    public override bool Mergeable => true;
    public override string Reference => "Kim et al. 2024 (Hydra); extremebird/Hydra vtab1k/hydra.py (hydra_both)";
    public override PublishedFigure? Published => new(76.5, 74.21, "Hydra README (group means); V-PETL Bench (19-task mean, best test epoch)");

    static readonly string[] Targets = { "attn.proj", "mlp.fc2" };

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 2, new[] { 1, 2, 4, 8 }, "rank r of each branch"),
        HyperSpec.Double("scale", 0.1, new[] { 0.01, 0.1, 1, 10 }, "branch scale s (the authors tune it per task)", min: 0),
        HyperSpec.Double("dropout", 0.2, Array.Empty<double>(), "dropout between down and up", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var wrappers = new List<HydraLinear>();
        foreach (var (path, module) in TargetMatcher.Find<Linear>(encoder.Root, Targets, Id))
        {
            var wrapper = new HydraLinear(module, h.Int("rank"), h.Double("scale"), h.Double("dropout"));
            TargetMatcher.Wrap(encoder.Root, path, wrapper);
            wrappers.Add(wrapper);
        }
        return new WrapperTuner<HydraLinear>(this, h, encoder, wrappers, w => w.hydra_par.parameters().Concat(w.hydra_seq.parameters()),
                                            w => w.Fold(), w => w.FoldTargets());
    }
}

/// <summary>One Hydra branch: up(dropout(down(x))), Linear layers with bias (keys down_proj, up_proj as in the
/// authors' Hydra_layer).</summary>
public sealed class HydraBranch : nn.Module<Tensor, Tensor>
{
    public Linear down_proj;
    public Linear up_proj;
    public ParallelDropout dropout;

    public HydraBranch(long inFeatures, long outFeatures, int rank, double dropoutRate) : base("HydraBranch")
    {
        down_proj = Linear(inFeatures, rank, hasBias: true);
        up_proj = Linear(rank, outFeatures, hasBias: true);
        dropout = new ParallelDropout(dropoutRate);
        using (no_grad())
        {
            init.xavier_uniform_(down_proj.weight!);
            init.zeros_(down_proj.bias!);
            init.zeros_(up_proj.weight!);
            init.zeros_(up_proj.bias!);
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => up_proj.forward(dropout.forward(down_proj.forward(x)));

    /// <summary>The branch as one affine map (eval mode): W = up·down, b = up·b_down + b_up.</summary>
    internal (Tensor Weight, Tensor Bias) Affine() =>
        (up_proj.weight!.matmul(down_proj.weight!), up_proj.weight!.matmul(down_proj.bias!) + up_proj.bias!);
}

/// <summary>A Linear with Hydra's parallel branch (fed its input) and sequential branch (fed its output).</summary>
public sealed class HydraLinear : ModuleWrapper
{
    public HydraBranch hydra_par;
    public HydraBranch hydra_seq;
    readonly double scale;

    public HydraLinear(Module<Tensor, Tensor> baseLayer, int rank, double scale, double dropout) : base("HydraLinear", baseLayer)
    {
        var linear = InnermostLinear;
        long inFeatures = linear.weight!.shape[1], outFeatures = linear.weight.shape[0];
        this.scale = scale;
        hydra_par = new HydraBranch(inFeatures, outFeatures, rank, dropout);
        hydra_seq = new HydraBranch(outFeatures, outFeatures, rank, dropout);
        RegisterComponents();
    }

    public override Tensor forward(Tensor u)
    {
        if (Merged) return base_layer.forward(u);
        var y = base_layer.forward(u);
        // y + s·(Par(u) + Seq(y)): one scaled add of the two branch outputs.
        return y.add(hydra_par.forward(u).add_(hydra_seq.forward(y)), alpha: scale);
    }

    internal IEnumerable<Tensor> FoldTargets()
    {
        var linear = InnermostLinear;
        yield return linear.weight!;
        if (linear.bias is not null) yield return linear.bias;
    }

    /// <summary>W ← W + s(W_par + W_seq W), b ← b + s(b_par + W_seq b + b_seq), on the innermost (already merged)
    /// layer, which at this point computes exactly what base_layer did.</summary>
    internal void Fold()
    {
        var linear = InnermostLinear;
        var w = linear.weight!;
        var (wPar, bPar) = hydra_par.Affine();
        var (wSeq, bSeq) = hydra_seq.Affine();
        var bias = linear.bias;
        if (bias is null && (bPar.abs().max().item<float>() > 0 || bSeq.abs().max().item<float>() > 0))
            throw new PeftSharpException($"cannot merge Hydra into a layer without bias ({Innermost.GetName()}): its branch biases have nowhere to go");
        var newWeight = w + (wPar + wSeq.matmul(w)) * scale;
        if (bias is not null)
        {
            var newBias = bias + (bPar + wSeq.matmul(bias) + bSeq) * scale;
            bias.copy_(newBias);
        }
        w.copy_(newWeight);
    }
}
