using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// SPT, sensitivity-aware visual parameter-efficient fine-tuning (He et al., ICCV 2023; ziplab/SPT engine.py
/// get_sensitivity and model/vision_transformer_timm.py). A pre-pass on the training split measures each weight's
/// sensitivity, Σ over 16 batches of 32 images (dataset order, no augmentation, train mode) of the squared gradient of
/// the cross-entropy; the most sensitive entries across the model are taken under a parameter budget. Every weight
/// matrix (q, k, v as sections of the fused qkv, proj, fc1, fc2) with at least (its structured module's
/// parameters)/α selected entries gets a structured module instead; a vector (a bias or its q/k/v section, a
/// LayerNorm's weight or bias) with at least len/β selected entries trains whole; the other selected entries train as
/// sparse changes of the frozen weights. The class token trains whole (the authors' ft_cls_token), the head as usual.
/// The number of selected entries is chosen so that the count (structured modules + sparse entries + whole vectors +
/// the class token, the authors' "+ 768") comes closest to the budget. A budget below one structured module is an
/// error; one above the most SPT can tune in the model (every matrix structured, every vector whole: 1,449,216 for
/// SPT-LoRA on ViT-B/16) tunes all of that, as the authors' sweep would.
/// <para>SPT-LoRA's structured module is a parallel LoRA, y += drop_path(B A dropout(x)) (A Kaiming, B zero, no bias,
/// r(in + out) parameters); SPT-Adapter's a sequential adapter on the layer's output, y += drop_path(up(GELU(down(
/// dropout(y))))) (biases, up zero, r(2·out + 1) + out parameters). Dropout 0.1 and drop-path 0.1 as in the authors'
/// modules; on attn.proj their code feeds the structured module the layer's input without dropout (for the adapter
/// too), and so does this one.</para>
/// <para>Where this differs from the authors' code: the budget is met by the exact number of selected entries (a
/// threshold on the sensitivity) where they sweep it in steps of 20,000; unselected LayerNorm entries they count but
/// never train (their sparse layers are Linear only), here they train; whole vectors train as changes of the frozen
/// vector (the same trajectory without weight decay). Their SPT-Adapter runs read the LoRA sensitivity files; here the
/// adapter's own structured cost decides. Sparse changes, selected entries and structured flags are what adapter files
/// hold; an unselected weight never moves. SPT-LoRA merges in place (every part is linear on the frozen path).</para>
/// </summary>
public abstract class SptBase : TunerMethod
{
    /// <summary>The authors' sensitivity batches: 32 images each (their sensitivity scripts' batch size).</summary>
    public const int SensitivityBatch = 32;

    protected abstract bool Adapter { get; }

    public override string Reference => "He et al., ICCV 2023 (SPT); ziplab/SPT sensitivity (16 × 32 train800 images), α 10, β 5, rank 8";
    public override PublishedFigure? Published => new(76.4, null, "He et al. 2023 (group means, best test epoch of their runs, per-task budget 0.2–1.0M)");
    /// <summary>The budget, at values the shipped backbone can hold (SPT-LoRA tunes at most 181,440 of it).</summary>
    public override CapacityKnob? Capacity => new("budget", ["50000", "100000"], ["25000", "50000", "100000", "200000"]);

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        // The authors' budgets run from 0.05M to 1.0M (their sensitivity files); their published runs pick one of 0.2–1.0M
        // per task. The grid takes the small end, which the shipped backbone can hold (SPT-LoRA tunes at most 181,440 of it).
        HyperSpec.Int("budget", 200_000, new[] { 50_000, 100_000, 200_000 }, "parameter budget: structured modules + sparse entries + whole vectors + class token"),
        HyperSpec.Int("rank", 8, Array.Empty<int>(), "rank of each structured module"),
        HyperSpec.Double("alpha", 10, Array.Empty<double>(), "α: a matrix is tuned structurally with ≥ (its module's parameters)/α sensitive entries", min: 1e-6),
        HyperSpec.Double("beta", 5, Array.Empty<double>(), "β: a vector trains whole with ≥ len/β sensitive entries", min: 1e-6),
        HyperSpec.Int("batches", 16, Array.Empty<int>(), "sensitivity batches of 32 training images"),
    };

    static readonly string[] LinearTargets = { "blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2" };
    static readonly string[] NormTargets = { "blocks.*.norm1", "blocks.*.norm2", "norm", "fc_norm" };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequireVit(Id);
        if (vit.cls_token is null) throw new PeftSharpException($"method '{Id}': the model has no class token (SPT tunes it whole)");
        int rank = h.Int("rank");
        var linears = new List<SptLinear>();
        foreach (var (path, module) in TargetMatcher.Find<Linear>(encoder.Root, LinearTargets, Id))
        {
            bool proj = path.EndsWith("attn.proj", StringComparison.Ordinal);
            var wrapper = new SptLinear(module, path.EndsWith("attn.qkv", StringComparison.Ordinal) ? 3 : 1, Adapter, rank, inputBranch: proj, dropout: proj ? 0 : 0.1);
            TargetMatcher.Wrap(encoder.Root, path, wrapper);
            linears.Add(wrapper);
        }
        var norms = new List<SptLayerNorm>();
        foreach (var (path, module) in TargetMatcher.Find<LayerNorm>(encoder.Root, NormTargets, Id))
        {
            var wrapper = new SptLayerNorm(module);
            TargetMatcher.Wrap(encoder.Root, path, wrapper);
            norms.Add(wrapper);
        }
        var applied = new SptApplied(this, h, encoder, vit, linears, norms);
        applied.CheckBudget();
        applied.Configure(applied.DefaultPlan());
        return applied;
    }
}

public sealed class SptLora : SptBase
{
    public override string Id => "spt-lora";
    public override string Summary => "sensitivity-chosen sparse entries + LoRA on matrices with many sensitive entries (training-split pre-pass, budget)";
    public override bool Mergeable => true;
    protected override bool Adapter => false;
}

public sealed class SptAdapter : SptBase
{
    public override string Id => "spt-adapter";
    public override string Summary => "sensitivity-chosen sparse entries + adapters on matrices with many sensitive entries (training-split pre-pass, budget)";
    public override bool Mergeable => false;
    protected override bool Adapter => true;
}

/// <summary>One tensor SPT may tune: a weight matrix (or one q/k/v section of the fused qkv), whose structured module
/// costs <paramref name="StructuredCost"/> parameters, or a vector (<paramref name="StructuredCost"/> 0).</summary>
public sealed record SptCandidate(string Name, long Size, long StructuredCost)
{
    public bool IsVector => StructuredCost == 0;

    /// <summary>Whether <paramref name="selected"/> sensitive entries make it structured (a matrix with ≥ C/α) or whole
    /// (a vector with ≥ len/β): the authors' comparisons, in floating point.</summary>
    public bool Promoted(long selected, double alpha, double beta) =>
        IsVector ? selected >= Size / beta : selected >= StructuredCost / alpha;

    /// <summary>The parameters it trains with <paramref name="selected"/> sensitive entries.</summary>
    public long Cost(long selected, double alpha, double beta) =>
        Promoted(selected, alpha, beta) ? (IsVector ? Size : StructuredCost) : selected;
}

/// <summary>What SPT tunes of one candidate: its structured module (a matrix), or these entries (flat indices, int64;
/// all of them for a whole vector; none when nothing of it was selected).</summary>
public sealed record SptChoice(bool Structured, Tensor Entries);

/// <summary>
/// SPT's budget allocation: given each candidate's sensitivity, the entries above a threshold are selected, each
/// candidate is promoted (structured or whole) or keeps its selected entries, and the threshold is the one whose total
/// count (plus <c>extra</c>, the class token) comes closest to the budget; a tie goes to the count under it. The total
/// never falls as the threshold falls (a promoted candidate costs more than its entries), so bisection finds it.
/// </summary>
public static class SptAllocation
{
    public static long Total(IReadOnlyList<SptCandidate> candidates, IReadOnlyList<long> selected, double alpha, double beta, long extra) =>
        extra + candidates.Select((c, i) => c.Cost(selected[i], alpha, beta)).Sum();

    /// <summary>The allocation from sensitivities (one non-negative tensor per candidate, any shape, read flat).</summary>
    public static (IReadOnlyList<SptChoice> Choices, long Total) BySensitivity(IReadOnlyList<SptCandidate> candidates, IReadOnlyList<Tensor> sensitivity,
                                                                              long budget, double alpha, double beta, long extra)
    {
        long[] Counts(int bits)
        {
            float t = BitConverter.Int32BitsToSingle(bits);
            return sensitivity.Select(s => { using var ge = s.ge(t); return ge.sum().item<long>(); }).ToArray();
        }
        long TotalAt(int bits) => Total(candidates, Counts(bits), alpha, beta, extra);
        // Non-negative floats order as their bit patterns: bisect on the bits. Threshold 0 selects everything, +∞ nothing.
        int lo = 0, hi = 0x7F800000;
        int chosen;
        long totalLo = TotalAt(lo);
        if (totalLo <= budget) chosen = lo;
        else
        {
            long totalHi = TotalAt(hi);
            while (hi - lo > 1)
            {
                int mid = lo + (hi - lo) / 2;
                long t = TotalAt(mid);
                if (t <= budget) (hi, totalHi) = (mid, t);
                else (lo, totalLo) = (mid, t);
            }
            chosen = totalLo - budget < budget - totalHi ? lo : hi;
        }
        float threshold = BitConverter.Int32BitsToSingle(chosen);
        var counts = Counts(chosen);
        var choices = candidates.Select((c, i) =>
        {
            if (c.Promoted(counts[i], alpha, beta))
                return new SptChoice(!c.IsVector, c.IsVector ? arange(c.Size, dtype: int64) : zeros(0, dtype: int64));
            using var flat = sensitivity[i].flatten();
            using var mask = flat.ge(threshold);
            return new SptChoice(false, mask.nonzero().flatten());
        }).ToList();
        return (choices, Total(candidates, counts, alpha, beta, extra));
    }

    /// <summary>The allocation without data: the first entries in candidate order stand for the most sensitive (so a
    /// model built without a pre-pass has a count near its budget).</summary>
    public static (IReadOnlyList<SptChoice> Choices, long Total) InOrder(IReadOnlyList<SptCandidate> candidates, long budget, double alpha, double beta, long extra)
    {
        long all = candidates.Sum(c => c.Size);
        long[] Counts(long taken)
        {
            long offset = 0;
            return candidates.Select(c => { long n = Math.Clamp(taken - offset, 0, c.Size); offset += c.Size; return n; }).ToArray();
        }
        long TotalAt(long taken) => Total(candidates, Counts(taken), alpha, beta, extra);
        // The largest count under the budget (lo) and the next (hi), which is over it.
        long lo = 0, hi = all;
        if (TotalAt(hi) <= budget) lo = hi;
        else
        {
            while (hi - lo > 1)
            {
                long mid = lo + (hi - lo) / 2;
                if (TotalAt(mid) <= budget) lo = mid; else hi = mid;
            }
        }
        long chosen = lo < all && TotalAt(hi) - budget < budget - TotalAt(lo) ? hi : lo;
        var counts = Counts(chosen);
        var choices = candidates.Select((c, i) => c.Promoted(counts[i], alpha, beta)
            ? new SptChoice(!c.IsVector, c.IsVector ? arange(c.Size, dtype: int64) : zeros(0, dtype: int64))
            : new SptChoice(false, arange(counts[i], dtype: int64))).ToList();
        return (choices, Total(candidates, counts, alpha, beta, extra));
    }
}

/// <summary>Selected entries of a frozen tensor and their trained changes: <c>delta[i]</c> is added to entry
/// <c>index[i]</c> of the tensor read flat.</summary>
public sealed class SparseEntries : nn.Module
{
    public Parameter delta;

    public SparseEntries(Tensor index) : base("SparseEntries")
    {
        delta = new Parameter(zeros(index.shape[0]));
        RegisterComponents();
        register_buffer("index", index);
    }

    public Tensor Index => get_buffer("index")!;
    public long Count => Index.shape[0];

    /// <summary><paramref name="base"/> with the changes added at the selected entries (a new tensor).</summary>
    public Tensor AddedTo(Tensor @base) =>
        Count == 0 ? @base : @base.flatten().index_add(0, Index, delta.to(@base.dtype), 1).view_as(@base);

    /// <summary>The changes alone, as a tensor shaped like <paramref name="like"/>.</summary>
    public Tensor Dense(Tensor like) =>
        zeros(like.numel(), dtype: like.dtype, device: like.device).index_add(0, Index, delta.to(like.dtype), 1).view_as(like);

    internal void Fold(Tensor @base)
    {
        if (Count == 0) return;
        using var flat = @base.view(-1);
        flat.index_add_(0, Index, delta, 1);
    }
}

/// <summary>SPT's structured module on one weight matrix (or q/k/v section): drop_path(B A dropout(u)) (LoRA, keys
/// lora_A, lora_B) or drop_path(up(GELU(down(dropout(u))))) (adapter, keys down, up).</summary>
public sealed class SptBranch : nn.Module<Tensor, Tensor>
{
    public Linear? lora_A;
    public Linear? lora_B;
    public Linear? down;
    public Linear? up;
    public ParallelDropout dropout;
    public DropPath drop_path;

    public SptBranch(long inFeatures, long outFeatures, int rank, bool adapter, double dropoutRate) : base("SptBranch")
    {
        if (adapter)
        {
            down = Linear(inFeatures, rank, hasBias: true);   // PyTorch's default bias init, as the authors'
            up = Linear(rank, outFeatures, hasBias: true);
            using (no_grad())
            {
                init.kaiming_uniform_(down.weight!, a: Math.Sqrt(5));
                init.zeros_(up.weight!);
                init.zeros_(up.bias!);
            }
        }
        else
        {
            lora_A = Linear(inFeatures, rank, hasBias: false);
            lora_B = Linear(rank, outFeatures, hasBias: false);
            using (no_grad())
            {
                init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
                init.zeros_(lora_B.weight!);
            }
        }
        dropout = new ParallelDropout(dropoutRate);
        drop_path = new DropPath(0.1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor u)
    {
        var dropped = dropout.forward(u);
        var y = lora_A is not null ? lora_B!.forward(lora_A.forward(dropped)) : up!.forward(F.gelu(down!.forward(dropped)));
        return drop_path.forward(y);
    }

    /// <summary>B A, the LoRA branch's update of its rows (evaluation: no dropout, no drop-path).</summary>
    internal Tensor DeltaWeight() => lora_B!.weight!.matmul(lora_A!.weight!);
}

/// <summary>
/// A Linear under SPT: sparse changes of its weight and bias (<c>spt_weight</c>, <c>spt_bias</c>), and a structured
/// module per row section (<c>structured</c>, or <c>structured_q/k/v</c> on the fused qkv) where the allocation chose
/// one (buffer <c>spt_structured</c>, 1 per structured section).
/// </summary>
public sealed class SptLinear : ModuleWrapper
{
    public SparseEntries spt_weight;
    public SparseEntries spt_bias;
    readonly SptBranch?[] branches;
    readonly bool adapter;
    readonly int rank;
    readonly double dropout;

    public SptLinear(Module<Tensor, Tensor> baseLayer, int sections, bool adapter, int rank, bool inputBranch, double dropout)
        : base("SptLinear", baseLayer)
    {
        var linear = InnermostLinear;
        Sections = sections;
        SectionRows = linear.weight!.shape[0] / sections;
        InputBranch = inputBranch;
        this.adapter = adapter;
        this.rank = rank;
        this.dropout = dropout;
        branches = new SptBranch?[sections];
        spt_weight = new SparseEntries(zeros(0, dtype: int64));
        spt_bias = new SparseEntries(zeros(0, dtype: int64));
        RegisterComponents();
        register_buffer("spt_structured", zeros(sections, dtype: int64));
    }

    public int Sections { get; }
    public long SectionRows { get; }
    public long InFeatures => InnermostLinear.weight!.shape[1];
    /// <summary>The structured module reads the layer's input (the authors' attn.proj), not its output (the adapter) or
    /// its dropped input (LoRA).</summary>
    public bool InputBranch { get; }
    /// <summary>False during the sensitivity pass: the layer is its base alone.</summary>
    public bool Active { get; set; } = true;
    public Tensor StructuredFlags => get_buffer("spt_structured")!;
    public IEnumerable<SptBranch> Branches => branches.OfType<SptBranch>();

    static readonly string[] SectionNames = { "q", "k", "v" };
    string BranchName(int section) => Sections == 3 ? $"structured_{SectionNames[section]}" : "structured";

    /// <summary>The parameters of a structured module on section rows × inputs.</summary>
    public long StructuredCost => adapter
        ? (InputBranch ? InFeatures : SectionRows) * rank + rank + rank * SectionRows + SectionRows
        : rank * (InFeatures + SectionRows);

    /// <summary>Sets what the layer tunes: which sections carry a structured module (fresh ones, initialised as the
    /// authors'), which weight and bias entries (flat indices) train as sparse changes.</summary>
    internal void Configure(bool[] structured, Tensor weightEntries, Tensor biasEntries)
    {
        using (no_grad()) StructuredFlags.copy_(tensor(structured.Select(s => s ? 1L : 0L).ToArray()));
        var device = InnermostLinear.weight!.device;
        ModuleSurgery.Replace(this, "spt_weight", new SparseEntries(weightEntries.to(device)).to(device));
        ModuleSurgery.Replace(this, "spt_bias", new SparseEntries(biasEntries.to(device)).to(device));
        for (int s = 0; s < Sections; s++)
        {
            if (branches[s] is not null) ModuleSurgery.Unregister(this, BranchName(s));
            branches[s] = null;
            if (!structured[s]) continue;
            long inputs = adapter && !InputBranch ? SectionRows : InFeatures;
            var branch = new SptBranch(inputs, SectionRows, rank, adapter, dropout).to(device);
            register_module(BranchName(s), branch);
            branches[s] = branch;
        }
    }

    internal IEnumerable<Parameter> TrainableParameters() =>
        new[] { spt_weight, spt_bias }.Where(e => e.Count > 0).Select(e => e.delta).Concat(Branches.SelectMany(b => b.parameters()));

    public override Tensor forward(Tensor x)
    {
        if (Merged || !Active) return base_layer.forward(x);
        var y = SparseForward(x);
        if (!branches.Any(b => b is not null)) return y;
        if (Sections == 1) return y + branches[0]!.forward(BranchInput(x, y));
        var parts = y.chunk(Sections, -1);
        for (int s = 0; s < Sections; s++)
            if (branches[s] is SptBranch branch) parts[s] = parts[s] + branch.forward(BranchInput(x, parts[s]));
        return cat(parts, -1);
    }

    /// <summary>LoRA reads the layer's input, the adapter its section of the output; the authors' proj reads the input.</summary>
    Tensor BranchInput(Tensor input, Tensor output) => adapter && !InputBranch ? output : input;

    Tensor SparseForward(Tensor x)
    {
        if (spt_weight.Count == 0 && spt_bias.Count == 0) return base_layer.forward(x);
        var linear = InnermostLinear;
        if (base_layer is Linear plain)
            return F.linear(x, spt_weight.AddedTo(plain.weight!), plain.bias is null ? null : spt_bias.AddedTo(plain.bias));
        var y = base_layer.forward(x) + F.linear(x, spt_weight.Dense(linear.weight!));
        return linear.bias is null ? y : y + spt_bias.Dense(linear.bias);
    }

    internal IEnumerable<Tensor> FoldTargets()
    {
        yield return InnermostLinear.weight!;
        if (InnermostLinear.bias is Tensor b) yield return b;
    }

    /// <summary>W ← W + ΔW (entries) + B A (each LoRA section's rows); b ← b + Δb.</summary>
    internal void Fold()
    {
        var linear = InnermostLinear;
        spt_weight.Fold(linear.weight!);
        if (linear.bias is Tensor bias) spt_bias.Fold(bias);
        for (int s = 0; s < Sections; s++)
            if (branches[s] is SptBranch branch)
            {
                using var rows = linear.weight!.narrow(0, s * SectionRows, SectionRows);
                rows.add_(branch.DeltaWeight());
            }
    }
}

/// <summary>A LayerNorm under SPT: sparse changes of its weight and bias (<c>spt_weight</c>, <c>spt_bias</c>).</summary>
public sealed class SptLayerNorm : ModuleWrapper
{
    public SparseEntries spt_weight;
    public SparseEntries spt_bias;

    public SptLayerNorm(Module<Tensor, Tensor> baseLayer) : base("SptLayerNorm", baseLayer)
    {
        spt_weight = new SparseEntries(zeros(0, dtype: int64));
        spt_bias = new SparseEntries(zeros(0, dtype: int64));
        RegisterComponents();
    }

    public LayerNorm Norm => (LayerNorm)Innermost;
    public bool Active { get; set; } = true;

    internal void Configure(Tensor weightEntries, Tensor biasEntries)
    {
        var device = Norm.weight!.device;
        ModuleSurgery.Replace(this, "spt_weight", new SparseEntries(weightEntries.to(device)).to(device));
        ModuleSurgery.Replace(this, "spt_bias", new SparseEntries(biasEntries.to(device)).to(device));
    }

    internal IEnumerable<Parameter> TrainableParameters() =>
        new[] { spt_weight, spt_bias }.Where(e => e.Count > 0).Select(e => e.delta);

    public override Tensor forward(Tensor x)
    {
        if (Merged || !Active || spt_weight.Count + spt_bias.Count == 0) return base_layer.forward(x);
        var norm = Norm;
        if (base_layer is LayerNorm plain)
            return F.layer_norm(x, plain.normalized_shape, spt_weight.AddedTo(plain.weight!), spt_bias.AddedTo(plain.bias!), plain.eps);
        // Under another wrapper: LN(x; w + Δw, b + Δb) = LN(x; w, b) + n(x)·Δw + Δb, n(x) the normalised input.
        var normalised = F.layer_norm(x, norm.normalized_shape, null, null, norm.eps);
        return base_layer.forward(x) + normalised * spt_weight.Dense(norm.weight!) + spt_bias.Dense(norm.bias!);
    }

    internal IEnumerable<Tensor> FoldTargets()
    {
        yield return Norm.weight!;
        yield return Norm.bias!;
    }

    internal void Fold()
    {
        spt_weight.Fold(Norm.weight!);
        spt_bias.Fold(Norm.bias!);
    }
}

/// <summary>SPT applied to one ViT: its wrapped layers, the candidates they offer, the pre-pass and the allocation.</summary>
public sealed class SptApplied : AppliedTuner, IPrePass
{
    readonly VisionTransformer vit;
    readonly List<SptLinear> linears;
    readonly List<SptLayerNorm> norms;
    readonly List<(SptCandidate Candidate, Module<Tensor, Tensor> Layer, int Section, bool Bias)> candidates = new();
    long total;
    int structuredCount;

    internal SptApplied(TunerMethod method, Hyperparameters h, TunableEncoder encoder, VisionTransformer vit,
                        List<SptLinear> linears, List<SptLayerNorm> norms) : base(method, h, encoder)
    {
        this.vit = vit;
        this.linears = linears;
        this.norms = norms;
        var names = encoder.Root.named_modules().ToDictionary(m => m.module, m => m.name, ReferenceEqualityComparer.Instance);
        foreach (var layer in linears.Cast<ModuleWrapper>().Concat(norms).OrderBy(l => ModuleOrder(encoder.Root, l)))
        {
            string path = AdapterFiles.CanonicalName(names[layer]);
            if (layer is SptLinear linear)
            {
                var w = linear.InnermostLinear;
                for (int s = 0; s < linear.Sections; s++)
                {
                    string section = linear.Sections == 3 ? $".{"qkv"[s]}" : "";
                    candidates.Add((new SptCandidate($"{path}{section}.weight", linear.SectionRows * linear.InFeatures, linear.StructuredCost), linear, s, false));
                    if (w.bias is not null) candidates.Add((new SptCandidate($"{path}{section}.bias", linear.SectionRows, 0), linear, s, true));
                }
            }
            else
            {
                long d = ((SptLayerNorm)layer).Norm.weight!.shape[0];
                candidates.Add((new SptCandidate($"{path}.weight", d, 0), layer, 0, false));
                candidates.Add((new SptCandidate($"{path}.bias", d, 0), layer, 0, true));
            }
        }
    }

    static int ModuleOrder(nn.Module root, nn.Module layer) =>
        root.named_modules().Select((m, i) => (m.module, i)).First(m => ReferenceEquals(m.module, layer)).i;

    public IReadOnlyList<SptCandidate> Candidates => candidates.Select(c => c.Candidate).ToList();
    long Budget => Hypers.Int("budget");
    double Alpha => Hypers.Double("alpha");
    double Beta => Hypers.Double("beta");
    /// <summary>The class token, which trains whole beside the allocation (the authors' "+ 768").</summary>
    long ClassToken => vit.cls_token!.numel();

    /// <summary>The parameters the current allocation trains (head excluded).</summary>
    public long Total => total;
    public int StructuredModules => structuredCount;

    public string PrePassName => "SPT sensitivity and budget allocation";
    public bool Selected { get; private set; }
    public void MarkSelected() => Selected = true;

    public IReadOnlyDictionary<string, double> PrePassMetrics => new Dictionary<string, double>
    {
        ["spt_budget"] = Budget, ["spt_params"] = total, ["spt_structured_modules"] = structuredCount,
    };

    public IEnumerable<Tensor> SelectionTensors() =>
        linears.SelectMany(l => new[] { l.StructuredFlags, l.spt_weight.Index, l.spt_bias.Index })
               .Concat(norms.SelectMany(n => new[] { n.spt_weight.Index, n.spt_bias.Index }));

    public override IEnumerable<Parameter> TrainableParameters() =>
        new[] { vit.cls_token! }.Concat(linears.SelectMany(l => l.TrainableParameters())).Concat(norms.SelectMany(n => n.TrainableParameters()));

    public override IEnumerable<Tensor> MergeTargets() => linears.SelectMany(l => l.FoldTargets()).Concat(norms.SelectMany(n => n.FoldTargets()));

    protected override void FoldIntoBase()
    {
        foreach (var l in linears) l.Fold();
        foreach (var n in norms) n.Fold();
    }

    protected override void OnMergedChanged(bool merged)
    {
        foreach (var l in linears) l.Merged = merged;
        foreach (var n in norms) n.Merged = merged;
    }

    /// <summary>A budget below one structured module is an error. One above what SPT can tune at all (every matrix
    /// structured, every vector whole, the class token: <see cref="Most"/>) tunes all of that, as the authors' sweep
    /// does when its largest step falls short of the budget (a small backbone under ViT-B's budgets).</summary>
    internal void CheckBudget()
    {
        var cheapest = candidates.Where(c => !c.Candidate.IsVector).MinBy(c => c.Candidate.StructuredCost).Candidate;
        if (Budget < cheapest.StructuredCost)
            throw new PeftSharpException($"method '{Method.Id}': 'budget' = {Budget} is smaller than one structured module ({cheapest.StructuredCost} parameters at rank {Hypers.Int("rank")} on {cheapest.Name})");
    }

    /// <summary>The most SPT can tune in this model: every matrix structured, every vector whole, the class token.</summary>
    public long Most => ClassToken + candidates.Sum(c => c.Candidate.IsVector ? c.Candidate.Size : c.Candidate.StructuredCost);

    internal (IReadOnlyList<SptChoice>, long) DefaultPlan() => SptAllocation.InOrder(Candidates, Budget, Alpha, Beta, ClassToken);

    /// <summary>Builds the layers' tuned parts from one choice per candidate.</summary>
    internal void Configure((IReadOnlyList<SptChoice> Choices, long Total) plan)
    {
        var byLayer = candidates.Zip(plan.Choices).GroupBy(p => p.First.Layer, ReferenceEqualityComparer.Instance);
        foreach (var group in byLayer)
        {
            var items = group.ToList();
            if (group.Key is SptLinear linear)
            {
                var structured = new bool[linear.Sections];
                var weight = new List<Tensor>();
                var bias = new List<Tensor>();
                foreach (var ((_, _, section, isBias), choice) in items)
                {
                    long size = isBias ? linear.SectionRows : linear.SectionRows * linear.InFeatures;
                    if (choice.Structured) structured[section] = true;
                    else (isBias ? bias : weight).Add(choice.Entries + section * size);
                }
                linear.Configure(structured, Cat(weight), Cat(bias));
            }
            else
            {
                var norm = (SptLayerNorm)group.Key;
                norm.Configure(items.Single(i => !i.First.Bias).Second.Entries, items.Single(i => i.First.Bias).Second.Entries);
            }
        }
        total = plan.Total;
        structuredCount = plan.Choices.Count(c => c.Structured);
    }

    static Tensor Cat(List<Tensor> parts) => parts.Count == 0 ? zeros(0, dtype: int64) : cat(parts.ToArray(), 0);

    /// <summary>Σ grad² of the cross-entropy over the first <c>batches</c> × 32 training images (dataset order, no
    /// augmentation, train mode, SPT's modules bypassed), then the allocation; the structured modules are built fresh
    /// from the random state the pass found.</summary>
    public void RunPrePass(PrePassData data)
    {
        using var rngState = get_rng_state();
        var parameters = vit.parameters().ToList();
        var wasTrainable = parameters.Select(p => p.requires_grad).ToList();
        bool wasTraining = vit.training;
        // Every candidate's base tensor once, by (layer, bias or weight).
        var tensors = candidates.Select(c => (c.Layer, c.Bias)).Distinct()
            .ToDictionary(k => k, k => k.Layer is SptLinear l ? (Tensor)(k.Bias ? l.InnermostLinear.bias! : l.InnermostLinear.weight!)
                                                              : (k.Bias ? ((SptLayerNorm)k.Layer).Norm.bias! : ((SptLayerNorm)k.Layer).Norm.weight!));
        var keys = tensors.Keys.ToList();
        var weights = keys.Select(k => tensors[k]).ToList();
        var sums = weights.Select(w => zeros_like(w)).ToList();
        (IReadOnlyList<SptChoice>, long) plan;
        try
        {
            foreach (var p in parameters) p.requires_grad = false;
            foreach (var w in weights) w.requires_grad = true;
            SetActive(false);
            vit.train();
            int images = Math.Min(Hypers.Int("batches") * SptBase.SensitivityBatch, data.Train.Count);
            foreach (var batch in data.Train.Unaugmented(data.Train.Indices.Take(images).ToList(), SptBase.SensitivityBatch))
                using (batch)
                using (var scope = NewDisposeScope())
                {
                    var logits = vit.forward(batch.Images.to(data.Device));
                    F.cross_entropy(logits, batch.Labels.to(data.Device)).backward();
                    using (no_grad())
                        for (int i = 0; i < weights.Count; i++)
                        {
                            sums[i].addcmul_(weights[i].grad!, weights[i].grad!, 1);
                            weights[i].grad = null;
                        }
                }
            var sensitivity = candidates.Select(c =>
            {
                var sum = sums[keys.IndexOf((c.Layer, c.Bias))];
                return c.Layer is SptLinear l ? sum.narrow(0, c.Section * l.SectionRows, l.SectionRows) : sum;
            }).ToList();
            plan = SptAllocation.BySensitivity(Candidates, sensitivity, Budget, Alpha, Beta, ClassToken);
        }
        finally
        {
            foreach (var w in weights) w.grad = null;
            for (int i = 0; i < parameters.Count; i++) parameters[i].requires_grad = wasTrainable[i];
            SetActive(true);
            vit.train(wasTraining);
        }
        set_rng_state(rngState);
        Configure(plan);
        foreach (var s in sums) s.Dispose();
        Selected = true;
    }

    void SetActive(bool active)
    {
        foreach (var l in linears) l.Active = active;
        foreach (var n in norms) n.Active = active;
    }

    /// <summary>A saved selection: the structured flags and entries of every layer; the layers are rebuilt from them.</summary>
    public void LoadSelection(IReadOnlyList<(Tensor Buffer, Tensor Saved, string Name)> saved, string where)
    {
        var byBuffer = saved.ToDictionary(s => s.Buffer, s => (s.Saved, s.Name), ReferenceEqualityComparer.Instance);
        Tensor Read(Tensor buffer, long limit)
        {
            var (value, name) = byBuffer[buffer];
            if (value.dim() != 1 || value.dtype != int64)
                throw new PeftSharpException($"{where}: selection '{name}' must be a vector of int64 indices");
            if (value.numel() > 0 && (value.min().item<long>() < 0 || value.max().item<long>() >= limit))
                throw new PeftSharpException($"{where}: selection '{name}' holds an index outside 0..{limit - 1}");
            return value.clone();
        }
        var structured = linears.Select(l =>
        {
            var (flags, name) = byBuffer[l.StructuredFlags];
            if (!flags.shape.SequenceEqual(l.StructuredFlags.shape))
                throw new PeftSharpException($"{where}: selection '{name}' has shape [{string.Join(", ", flags.shape)}], the model expects [{l.Sections}]");
            return flags.data<long>().Select(f => f != 0).ToArray();
        }).ToList();
        var weights = linears.Select(l => Read(l.spt_weight.Index, l.InnermostLinear.weight!.numel())).ToList();
        var biases = linears.Select(l => Read(l.spt_bias.Index, l.InnermostLinear.bias?.numel() ?? 0)).ToList();
        var normEntries = norms.Select(n => (Read(n.spt_weight.Index, n.Norm.weight!.numel()), Read(n.spt_bias.Index, n.Norm.bias!.numel()))).ToList();
        for (int i = 0; i < linears.Count; i++) linears[i].Configure(structured[i], weights[i], biases[i]);
        for (int i = 0; i < norms.Count; i++) norms[i].Configure(normEntries[i].Item1, normEntries[i].Item2);
        structuredCount = structured.Sum(s => s.Count(x => x));
        total = TrainableParameters().Sum(p => p.numel());
    }
}
