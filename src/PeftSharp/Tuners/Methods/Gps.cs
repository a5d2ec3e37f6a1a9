using PeftSharp.Data;
using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// GPS, gradient-based parameter selection (Zhang et al., "Gradient-based Parameter Selection for Efficient
/// Fine-Tuning", CVPR 2024; FightingFighting/GPS). A pre-pass picks, in every weight matrix (qkv, proj, fc1, fc2 of each
/// block and the patch-embedding conv read as a D×(3·P²) matrix), the K input entries of each output row with the
/// largest |gradient| of a supervised contrastive loss accumulated over the training split; training then changes
/// only those entries, plus every bias that is not a LayerNorm's.
/// <para>The selected entries are trained as a sparse update ΔW (values [rows, K], column indices [rows, K]) added to
/// the frozen W: the same trajectory as the authors' masked-gradient fine-tuning under their Adam with weight decay 0,
/// and an unselected weight cannot move. (With weight decay, AdamW here decays ΔW, pulling the selected entries
/// towards their pretrained values, where decaying the masked full weight would also shrink the unselected ones.)
/// Adapter files hold only ΔW's values and indices and the biases; merging adds ΔW into W in place (zero inference
/// overhead). Parameters: K·R + R with R = 83,712 rows (= biases) on ViT-B/16, so 167,424 at K = 1.</para>
/// <para>Pre-pass (the authors' calculate_gradient with --contrastive): train mode, two augmented views per image,
/// the supervised contrastive loss (Khosla et al. 2020, τ = 0.07) on the pre-logit features, gradients summed over
/// all batches. The views are RandomResizedCrop (scale 0.08–1) + horizontal flip of the un-augmented training images,
/// drawn from the run's seed; the authors' views add colour jitter (p 0.8) and grayscale (p 0.2), which PeftSharp's
/// pipeline does not have.</para>
/// </summary>
public sealed class Gps : TunerMethod
{
    public override CapacityKnob? Capacity => new("k", ["1", "2"], ["1", "2", "4", "8"]);
    public override string Id => "gps";
    public override string Summary => "sparse fine-tuning of the top-K |gradient| entries per weight row (training-split pre-pass) and the biases";
    public override bool Mergeable => true;
    public override string Reference => "Zhang et al., CVPR 2024 (GPS); FightingFighting/GPS gradient_perCell with the contrastive pre-pass; V-PETL Bench VTAB-1K 75.18 (19-task mean, best test epoch kept)";

    /// <summary>The weight matrices GPS selects in: every block's Linear layers (the patch embedding is added apart).</summary>
    static readonly string[] LinearTargets = { "blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2" };

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("k", 1, new[] { 1, 2, 4 }, "entries K selected per output row of each weight matrix"),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequireVit(Id);
        int k = h.Int("k");
        var wrappers = new List<SparseDelta>();
        foreach (var (path, module) in TargetMatcher.Find<Linear>(encoder.Root, LinearTargets, Id))
            wrappers.Add(Wrap(encoder.Root, path, new SparseDeltaLinear(module, Check(k, module, path))));
        if (ModuleWrapper.Unwrap(vit.patch_embed.proj) is Conv2d)
            wrappers.Add(Wrap(encoder.Root, "patch_embed.proj", new SparseDeltaConv(vit.patch_embed.proj, Check(k, vit.patch_embed.proj, "patch_embed.proj"))));
        var norms = encoder.LayerNormParameters().Select(p => p.Parameter).ToHashSet(ReferenceEqualityComparer.Instance);
        var biases = encoder.BackboneParameters()
            .Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal) && !norms.Contains(p.Parameter))
            .Select(p => p.Parameter).ToList();
        return new Applied(this, h, encoder, vit, wrappers, biases);
    }

    static SparseDelta Wrap(nn.Module root, string path, SparseDelta wrapper)
    {
        TargetMatcher.Wrap(root, path, wrapper);
        return wrapper;
    }

    static int Check(int k, nn.Module module, string path)
    {
        long inputs = ModuleWrapper.Unwrap(module) switch
        {
            Linear l => l.weight!.shape[1],
            Conv2d c => c.weight![0].numel(),
            _ => 0,
        };
        if (k > inputs) throw new PeftSharpException($"method 'gps': 'k' = {k} exceeds the {inputs} inputs of {path}");
        return k;
    }

    /// <summary>
    /// Supervised contrastive loss (Khosla et al. 2020) of two views, as the authors' SupConLoss (contrast mode "all",
    /// temperature = base temperature = τ): every one of the 2B features is an anchor; its positives are the other
    /// features of its class (its own other view included), its contrast set every other feature.
    /// </summary>
    public static Tensor SupervisedContrastiveLoss(Tensor view1, Tensor view2, Tensor labels, double temperature = 0.07)
    {
        var features = F.normalize(cat(new[] { view1, view2 }, 0), dim: 1);
        long n = features.shape[0];
        var logits = features.matmul(features.t()).div(temperature);
        logits = logits - logits.max(1, keepdim: true).values.detach();
        var both = cat(new[] { labels, labels }, 0);
        var notSelf = ones(n, n, device: features.device) - eye(n, device: features.device);
        var positives = both.unsqueeze(1).eq(both.unsqueeze(0)).to(features.dtype) * notSelf;
        var logProb = logits - (logits.exp() * notSelf).sum(1, keepdim: true).log();
        var meanPositive = (positives * logProb).sum(1) / positives.sum(1);
        return -meanPositive.mean();
    }

    /// <summary>Per row of a score matrix [rows, inputs], the columns of its K largest entries, ascending.</summary>
    public static Tensor TopEntries(Tensor scores, int k) => scores.topk(k, dim: 1).indexes.sort(1).Values;

    sealed class Applied : AppliedTuner, IPrePass
    {
        readonly VisionTransformer vit;
        readonly List<SparseDelta> wrappers;
        readonly List<Parameter> biases;

        public Applied(TunerMethod method, Hyperparameters h, TunableEncoder encoder, VisionTransformer vit,
                       List<SparseDelta> wrappers, List<Parameter> biases) : base(method, h, encoder)
        {
            this.vit = vit;
            this.wrappers = wrappers;
            this.biases = biases;
        }

        public string PrePassName => "GPS gradient-based selection";
        public bool Selected { get; private set; }
        public void MarkSelected() => Selected = true;
        public IEnumerable<Tensor> SelectionTensors() => wrappers.Select(w => w.Index);

        public override IEnumerable<Parameter> TrainableParameters() => wrappers.Select(w => w.gps_delta).Concat(biases);
        public override IEnumerable<Tensor> MergeTargets() => wrappers.Select(w => (Tensor)w.BaseWeight);

        protected override void FoldIntoBase()
        {
            foreach (var w in wrappers) w.Fold();
        }

        protected override void OnMergedChanged(bool merged)
        {
            foreach (var w in wrappers) w.Merged = merged;
        }

        /// <summary>Accumulates |∂L_SupCon/∂W| over the training split for every selectable weight, then keeps each
        /// row's top K; parameters' trainability and gradients are left as found.</summary>
        public void RunPrePass(PrePassData data)
        {
            var parameters = vit.parameters().ToList();
            var wasTrainable = parameters.Select(p => p.requires_grad).ToList();
            bool wasTraining = vit.training;
            var weights = wrappers.Select(w => w.BaseWeight).ToList();
            try
            {
                foreach (var p in parameters) p.requires_grad = false;
                foreach (var w in weights) w.requires_grad = true;
                vit.train();
                var rng = new Random(data.Seed);
                foreach (var batch in data.Train.Unaugmented())
                    using (batch)
                    using (var scope = NewDisposeScope())
                    {
                        var first = Augmentation.ManyShot.Apply(batch.Images, rng);
                        var second = Augmentation.ManyShot.Apply(batch.Images, rng);
                        var tokens = vit.ForwardFeatures(cat(new[] { first, second }, 0).to(data.Device), out var layout);
                        var features = vit.ForwardHead(tokens, layout, preLogits: true);
                        var (f1, f2) = (features[..batch.Size], features[batch.Size..]);
                        SupervisedContrastiveLoss(f1, f2, batch.Labels.to(data.Device)).backward();
                    }
                using (no_grad())
                    foreach (var w in wrappers)
                        w.Select(TopEntries(w.BaseWeight.grad!.abs().flatten(1), w.K));
                Selected = true;
            }
            finally
            {
                // Drop the weight-sized gradients the pass accumulated (a full model's worth on the frozen weights).
                foreach (var w in weights) w.grad = null;
                for (int i = 0; i < parameters.Count; i++) parameters[i].requires_grad = wasTrainable[i];
                vit.train(wasTraining);
            }
        }
    }
}

/// <summary>
/// A layer whose weight trains only at selected entries: W + ΔW, ΔW holding the values <c>gps_delta</c> [rows, K] at the
/// columns <c>gps_index</c> [rows, K] (a buffer) of the weight read as [rows, inputs]. Until a selection is made the
/// first K columns of each row.
/// </summary>
public abstract class SparseDelta : ModuleWrapper
{
    public Parameter gps_delta;

    protected SparseDelta(string name, Module<Tensor, Tensor> baseLayer, Parameter weight, int k) : base(name, baseLayer)
    {
        long rows = weight.shape[0];
        gps_delta = new Parameter(zeros(rows, k));
        RegisterComponents();
        register_buffer("gps_index", arange(k, dtype: int64).unsqueeze(0).expand(rows, k).contiguous());
    }

    public abstract Parameter BaseWeight { get; }
    public Tensor Index => get_buffer("gps_index")!;
    public int K => (int)gps_delta.shape[1];

    /// <summary>W + ΔW in W's shape.</summary>
    protected Tensor UpdatedWeight()
    {
        var w = BaseWeight;
        return w.flatten(1).scatter_add(1, Index, gps_delta.to(w.dtype)).view(w.shape);
    }

    /// <summary>ΔW alone, dense, in W's shape.</summary>
    protected Tensor DeltaWeight()
    {
        var w = BaseWeight;
        return zeros(w.shape[0], w[0].numel(), dtype: w.dtype, device: w.device).scatter(1, Index, gps_delta.to(w.dtype)).view(w.shape);
    }

    internal void Fold() => BaseWeight.flatten(1).scatter_add_(1, Index, gps_delta);

    internal void Select(Tensor columns)
    {
        using var _ = no_grad();
        Index.copy_(columns);
        columns.Dispose();
    }
}

/// <summary>GPS on a Linear: x (W + ΔW)ᵀ + b, one product (or the wrapped base's output plus x ΔWᵀ).</summary>
public sealed class SparseDeltaLinear : SparseDelta
{
    public SparseDeltaLinear(Module<Tensor, Tensor> baseLayer, int k)
        : base("SparseDeltaLinear", baseLayer, ((Linear)Unwrap(baseLayer)).weight!, k) { }

    public override Parameter BaseWeight => InnermostLinear.weight!;

    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        if (base_layer is Linear linear) return F.linear(x, UpdatedWeight(), linear.bias);
        return base_layer.forward(x) + F.linear(x, DeltaWeight());
    }
}

/// <summary>GPS on the patch embedding's conv (kernel = stride = patch, no padding), its weight read as [D, 3·P²].</summary>
public sealed class SparseDeltaConv : SparseDelta
{
    public SparseDeltaConv(Module<Tensor, Tensor> baseLayer, int k)
        : base("SparseDeltaConv", baseLayer, ((Conv2d)Unwrap(baseLayer)).weight!, k) { }

    public override Parameter BaseWeight => ((Conv2d)Innermost).weight!;

    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        var w = BaseWeight;
        var stride = new[] { w.shape[2], w.shape[3] };
        if (base_layer is Conv2d conv) return F.conv2d(x, UpdatedWeight(), conv.bias, strides: stride);
        return base_layer.forward(x) + F.conv2d(x, DeltaWeight(), null, strides: stride);
    }
}
