using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// LoRA (Hu et al. 2021): y = W x + s · B A dropout(x), A Kaiming-uniform, B zero. Defaults follow the unifying
/// study's code: targets q, k and v of the fused qkv (one A, B emitting 3D rows), input dropout 0.1, no α/r scaling
/// (alpha unset means s = 1). With alpha, s = alpha / r, or alpha / √r with rslora=true (Kalajdzievski 2023).
/// Targets are any Linear layers by name ("proj", "mlp.fc1", "blocks.*.attn.qkv"); "q", "k", "v" select row
/// sections of the fused qkv.
/// </summary>
public sealed class Lora : TunerMethod
{
    public override CapacityKnob? Capacity => new("rank", ["1", "8"], ["1", "2", "4", "8", "16", "32", "64"]);
    public override string Id => "lora";
    public override string Summary => "low-rank update B·A of the targeted Linear layers (default q,k,v of qkv)";
    public override bool Mergeable => true;
    public override string Reference => "Hu et al. 2021; the unifying study's code (targets q,k,v, dropout 0.1, unscaled)";
    public override IReadOnlyList<HyperSpec> Hypers => LoraHypers;

    internal static readonly IReadOnlyList<HyperSpec> LoraHypers = new[]
    {
        HyperSpec.Int("rank", 8, new[] { 1, 8, 16, 32 }, "rank r of the update"),
        HyperSpec.OptionalDouble("alpha", "scaling numerator: s = alpha/r (or alpha/√r with rslora); unset = 1, as in the study"),
        HyperSpec.Bool("rslora", false, "rank-stabilised scaling alpha/√r"),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout on the LoRA input", min: 0, max: 0.99),
        HyperSpec.List("targets", "q,k,v", "q,k,v select sections of the fused qkv; other names or patterns select Linear layers"),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) => ApplyLora(this, encoder, h, dora: false);

    internal static AppliedTuner ApplyLora(TunerMethod method, TunableEncoder encoder, Hyperparameters h, bool dora)
    {
        int rank = h.Int("rank");
        double? alpha = h.OptionalDouble("alpha");
        double scaling = alpha is double a ? (h.Bool("rslora") ? a / Math.Sqrt(rank) : a / rank) : 1.0;
        var targets = h.List("targets");
        var sections = targets.Where(t => t is "q" or "k" or "v").Select(t => "qkv".IndexOf(t[0])).OrderBy(i => i).ToArray();
        var names = targets.Where(t => t is not ("q" or "k" or "v")).ToList();
        if (sections.Length > 0 && names.Contains("qkv"))
            throw new PeftSharpException($"method '{method.Id}': targets name both 'qkv' and its sections q/k/v");

        var wrappers = new List<LoraLinear>();
        void WrapAll(IEnumerable<string> patterns, int[]? rows)
        {
            foreach (var (path, module) in TargetMatcher.Find<Linear>(encoder.Root, patterns, method.Id))
            {
                var wrapper = new LoraLinear(module, rank, scaling, h.Double("dropout"), rows, dora);
                TargetMatcher.Wrap(encoder.Root, path, wrapper);
                wrappers.Add(wrapper);
            }
        }
        if (sections.Length > 0) WrapAll(new[] { "attn.qkv" }, sections.Length == 3 ? null : sections);
        if (names.Count > 0) WrapAll(names, null);
        return new WrapperTuner<LoraLinear>(method, h, encoder, wrappers, w => w.TrainableParameters(), w => w.Fold(), w => w.FoldTargets());
    }
}

/// <summary>
/// DoRA (Liu et al. 2024): W' = m · (W + s·B A) / ‖W + s·B A‖ (norm per output row, treated as a constant in the
/// gradient as the paper recommends), m initialised to ‖W‖. Trains LoRA's A, B plus m (out_features per layer).
/// </summary>
public sealed class Dora : TunerMethod
{
    public override CapacityKnob? Capacity => new("rank", ["1", "8"]);
    public override string Id => "dora";
    public override string Summary => "weight-decomposed LoRA: learned magnitude × normalised (W + B·A)";
    public override bool Mergeable => true;
    public override string Reference => "Liu et al., ICML 2024; Hugging Face peft's DoRA layer";
    public override IReadOnlyList<HyperSpec> Hypers => Lora.LoraHypers;

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) => Lora.ApplyLora(this, encoder, h, dora: true);
}

/// <summary>A Linear with a LoRA (optionally DoRA) branch; keys lora_A.weight, lora_B.weight, lora_magnitude_vector.</summary>
public sealed class LoraLinear : ModuleWrapper
{
    public Linear lora_A;
    public Linear lora_B;
    public ParallelDropout lora_dropout;
    public Parameter? lora_magnitude_vector;
    readonly double scaling;
    readonly int[]? rowSections;
    readonly long sectionSize;

    public LoraLinear(Module<Tensor, Tensor> baseLayer, int rank, double scaling, double dropout, int[]? rowSections, bool dora)
        : base("LoraLinear", baseLayer)
    {
        var linear = InnermostLinear;
        long inFeatures = linear.weight!.shape[1], outFeatures = linear.weight.shape[0];
        this.scaling = scaling;
        this.rowSections = rowSections;
        sectionSize = outFeatures / 3;
        long outRows = rowSections is null ? outFeatures : sectionSize * rowSections.Length;
        lora_A = Linear(inFeatures, rank, hasBias: false);
        lora_B = Linear(rank, outRows, hasBias: false);
        lora_dropout = new ParallelDropout(dropout);
        using (no_grad())
        {
            init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
            init.zeros_(lora_B.weight!);
        }
        if (dora)
            using (no_grad()) lora_magnitude_vector = new Parameter(LowRankUpdate.RowNorms(linear.weight).detach().clone());
        RegisterComponents();
    }

    public double Scaling => scaling;
    public int[]? RowSections => rowSections;

    internal IEnumerable<Parameter> TrainableParameters()
    {
        yield return lora_A.weight!;
        yield return lora_B.weight!;
        if (lora_magnitude_vector is not null) yield return lora_magnitude_vector;
    }

    /// <summary>s · B A as a full [out, in] matrix (zero rows outside the selected sections).</summary>
    public Tensor DeltaWeight()
    {
        var delta = lora_B.weight!.matmul(lora_A.weight!) * scaling;
        return ScatterRows(delta);
    }

    /// <summary>Places weight rows computed for the selected q/k/v sections into a matrix over all qkv rows (zero rows
    /// for the others).</summary>
    Tensor ScatterRows(Tensor partial)
    {
        if (rowSections is null) return partial;
        var parts = new List<Tensor>();
        int taken = 0;
        for (int s = 0; s < 3; s++)
        {
            if (rowSections.Contains(s))
            {
                parts.Add(partial[(int)(taken * sectionSize)..(int)((taken + 1) * sectionSize)]);
                taken++;
            }
            else
            {
                var shape = partial.shape.ToArray();
                shape[0] = sectionSize;
                parts.Add(zeros(shape, dtype: partial.dtype, device: partial.device));
            }
        }
        return cat(parts.ToArray(), 0);
    }

    public override Tensor forward(Tensor x) => Merged ? base_layer.forward(x) : OnRows(x, ForwardRows);

    Tensor ForwardRows(Tensor rows)
    {
        if (LowRankUpdate.Fusable(base_layer, rows))
        {
            var linear = (Linear)base_layer;
            var fullB = ScatterRows(lora_B.weight!);   // zero rows outside a q/k/v selection
            if (lora_magnitude_vector is Parameter magnitude)
                return is_grad_enabled() || lora_dropout.Active
                    ? LowRankUpdate.Rescaled(rows, linear, lora_A.weight!, fullB, magnitude, lora_dropout.Active ? lora_dropout.P : 0, scaling)
                    : LowRankUpdate.Affine(rows, FoldedWeight(), linear.bias);   // evaluation: one product
            if (lora_dropout.Active) return LowRankUpdate.DroppedInput(rows, linear, lora_A.weight!, fullB, lora_dropout.P, scaling);
            return LowRankUpdate.FoldingPays(rows, linear, lora_A.weight!.shape[0])
                ? LowRankUpdate.Folded(rows, linear, lora_A.weight!, fullB, scaling)
                : LowRankUpdate.AddUp(rows, linear, lora_A.forward(rows), fullB, scaling);
        }
        var result = BaseOutputToUpdate(rows);
        var dropped = lora_dropout.forward(rows);
        var lowRank = lora_A.forward(dropped);
        // B over all output rows, in the products' precision (in-place products are not autocast), and row-major: the
        // product's backward then takes ∂B as (lowRankᵀ g)ᵀ, three times faster than gᵀ lowRank.
        var up = ScatterRows(lora_B.weight!).to(result.dtype).t().contiguous();
        if (lora_magnitude_vector is null)
        {
            // W x + b + s·B A x: the low-rank product accumulates into the base output in place (a Linear's backward
            // needs neither its output nor this product), so no update-sized temporary is written and read back.
            result.addmm_(lowRank, up, beta: 1, alpha: (float)scaling);
        }
        else result = DoraOutput(result, dropped, lowRank, up);
        return result;
    }

    /// <summary>DoRA through autograd, for layers the fused node does not take (autocast, other devices, a trained base).
    /// On the base output W x + b: b + m/‖W+ΔW‖ ⊙ (W x + ΔW x), the norm detached (peft's formulation,
    /// result + (m/‖·‖ − 1)⊙W x + m/‖·‖⊙ΔW x, in fewer passes). With active dropout peft feeds the dropped input d to both
    /// the LoRA term and the rescaled base term: result + (m/‖·‖ − 1)⊙W d + m/‖·‖⊙ΔW d.</summary>
    Tensor DoraOutput(Tensor result, Tensor dropped, Tensor lowRank, Tensor up)
    {
        var linear = InnermostLinear;
        Tensor norm;
        using (no_grad()) norm = LowRankUpdate.RowNorms(linear.weight! + DeltaWeight());
        var magnitudeScale = (lora_magnitude_vector! / norm).to(result.dtype);
        if (lora_dropout.Active)
        {
            var baseOfDropped = F.linear(dropped, linear.weight!);
            var updated = baseOfDropped.addmm(lowRank, up, beta: 1, alpha: (float)scaling);   // W d + ΔW d
            return result.sub_(baseOfDropped).addcmul_(updated, magnitudeScale, 1);
        }
        result.addmm_(lowRank, up, beta: 1, alpha: (float)scaling);   // W x + b + ΔW x
        return linear.bias is Tensor b ? (b * (1 - magnitudeScale)).addcmul(result, magnitudeScale, 1) : result * magnitudeScale;
    }

    internal IEnumerable<Tensor> FoldTargets()
    {
        yield return InnermostLinear.weight!;
    }

    /// <summary>W ← W + s·B A (LoRA), or W ← m · (W + s·B A)/‖·‖ (DoRA; the bias is unchanged, as in DoRA).</summary>
    internal void Fold() => InnermostLinear.weight!.copy_(FoldedWeight());

    Tensor FoldedWeight()
    {
        var merged = InnermostLinear.weight! + DeltaWeight();
        return lora_magnitude_vector is null ? merged : merged * (lora_magnitude_vector / LowRankUpdate.RowNorms(merged)).unsqueeze(1);
    }
}
