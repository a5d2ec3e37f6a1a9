using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// DiffFit (Xie et al. 2023) as the unifying study runs it: BitFit ∪ LayerNorm tuning plus per-block learnable
/// vectors γ₁, γ₂ (init 1) scaling the attention and MLP residual branches. Mergeable: γ folds into attn.proj / mlp.fc2.
/// </summary>
public sealed class DiffFit : TunerMethod
{
    public override string Id => "difffit";
    public override string Summary => "BitFit + LayerNorm + per-block γ scaling of the residual branches";
    public override bool Mergeable => true;

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var gates = encoder.Blocks.Select((block, i) =>
        {
            var g = new DiffFitGates(encoder.EmbedDim);
            block.Attach("difffit", g, InsertionPoint.AttnScale, InsertionPoint.MlpScale);
            return (block, g);
        }).ToList();
        var selected = BitFit.Biases(encoder).Concat(encoder.LayerNormParameters().Where(p => !TunableEncoder.IsHead(p.Name)).Select(p => p.Parameter))
                             .Distinct(ReferenceEqualityComparer.Instance).Cast<Parameter>();
        return new Applied(this, h, encoder, selected.ToList(), gates);
    }

    sealed class Applied : AppliedTuner
    {
        readonly List<Parameter> selected;
        readonly List<(Block Block, DiffFitGates Gates)> gates;

        public Applied(TunerMethod m, Hyperparameters h, TunableEncoder e, List<Parameter> selected, List<(Block, DiffFitGates)> gates)
            : base(m, h, e)
        {
            this.selected = selected;
            this.gates = gates;
        }

        public override int MergePhase => 1;
        public override IEnumerable<Parameter> TrainableParameters() => selected.Concat(gates.SelectMany(g => new[] { g.Gates.gamma1, g.Gates.gamma2 }));

        public override IEnumerable<Tensor> MergeTargets() =>
            gates.SelectMany(g => LinearTensors(g.Block.attn.proj).Concat(LinearTensors(g.Block.mlp.fc2)));

        protected override void FoldIntoBase()
        {
            foreach (var (block, g) in gates)
            {
                ScaleRows(block.attn.proj, g.gamma1);
                ScaleRows(block.mlp.fc2, g.gamma2);
            }
        }

        protected override void OnMergedChanged(bool merged)
        {
            foreach (var (_, g) in gates) g.Merged = merged;
        }

        public override void Detach()
        {
            foreach (var (block, _) in gates) block.Tuners.Remove(block, "difffit");
        }

        static IEnumerable<Tensor> LinearTensors(nn.Module m)
        {
            var linear = (Linear)ModuleWrapper.Unwrap(m);
            yield return linear.weight!;
            if (linear.bias is not null) yield return linear.bias;
        }

        static void ScaleRows(nn.Module m, Tensor gamma)
        {
            var linear = (Linear)ModuleWrapper.Unwrap(m);
            linear.weight!.mul_(gamma.unsqueeze(1));
            linear.bias?.mul_(gamma);
        }
    }
}

/// <summary>γ₁ (attention branch) and γ₂ (MLP branch) of one block.</summary>
public sealed class DiffFitGates : BlockTuner
{
    public Parameter gamma1;
    public Parameter gamma2;

    public DiffFitGates(int dim) : base("DiffFitGates")
    {
        gamma1 = new Parameter(ones(dim));
        gamma2 = new Parameter(ones(dim));
        RegisterComponents();
    }

    public bool Merged { get; set; }

    public override bool PrefixTokensStandAlone => true;   // token by token

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout) =>
        Merged ? x : point == InsertionPoint.AttnScale ? x * gamma1 : x * gamma2;
}
