using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// LAST, low-rank attention side-tuning (Tang, Fu, Zhu, Wu, "Low-Rank Attention Side-Tuning for Parameter-Efficient
/// Fine-Tuning", arXiv 2402.04009, 2024). No official code was found; this follows the paper as its abstract and
/// reviews describe it. The frozen backbone is a feature extractor: its outputs are read, never differentiated. Its N
/// blocks form m = N/g groups (gap g); z₀ are the tokens after the patch embedding (class token and position
/// embedding added), zᵢ the tokens after group i. A side network of m low-rank self-attention (LSA) blocks runs beside
/// it: u₀ = z₀, uᵢ = Fᵢ(uᵢ₋₁ + zᵢ), each Fᵢ T layers f(x) = x + W_o·Attn(W_q LN(x), W_k LN(x), W_v LN(x)) whose
/// attention works in r ≪ D dimensions (h heads) and has no MLP. The corrected representation u_m − Σᵢ₌₀^{m−1} zᵢ (the
/// paper's bias correction: the side network's sum of inputs would otherwise count every zᵢ) replaces the last block's
/// output and goes through the backbone's final norm and head.
/// <para>Where the paper is ambiguous, this form is ours: W_q, W_k, W_v (D→r) and W_o (r→D) carry biases; W_o and its
/// bias start at zero, so the model starts as the frozen backbone (u_m − Σ zᵢ = z_m), W_q, W_k, W_v Kaiming-uniform;
/// one layer per group and g = 1 by default; the heads split r. Parameters m·T·(4Dr + 3r + 3D): 618,048 on ViT-B at
/// r = 16 (the published 0.66M includes the head). Not mergeable (attention over the side state); the side path spans
/// blocks, so it refuses gradient checkpointing, and a method that adds tokens per block does not compose with it.</para>
/// </summary>
public sealed class Last : TunerMethod
{
    public override string Id => "last";
    public override string Summary => "side network of low-rank self-attention blocks fed by the frozen backbone's group outputs";
    public override bool Mergeable => false;
    public override string Reference => "Tang et al. 2024 (LAST, arXiv 2402.04009); no official code: the paper's form, u_m − Σ z_i into the final norm, rank 16";
    public override PublishedFigure? Published => new(76.44, 74.15, "V-PETL Bench (19-task mean, best test epoch; group means derived)");
    public override CapacityKnob? Capacity => new("rank", ["8", "16"], ["4", "8", "16", "32"]);

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 16, new[] { 8, 16, 32 }, "dimension r of the side network's attention"),
        HyperSpec.Int("heads", 1, Array.Empty<int>(), "attention heads splitting r"),
        HyperSpec.Int("gap", 1, Array.Empty<int>(), "backbone blocks per side block (g; the depth must be a multiple)"),
        HyperSpec.Int("layers", 1, Array.Empty<int>(), "LSA layers per side block (T)"),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        int rank = h.Int("rank"), heads = h.Int("heads"), gap = h.Int("gap"), depth = encoder.Blocks.Count;
        if (rank % heads != 0) throw new PeftSharpException($"method 'last': 'heads' = {heads} does not divide 'rank' = {rank}");
        if (gap > depth || depth % gap != 0) throw new PeftSharpException($"method 'last': 'gap' = {gap} does not divide the {depth} blocks into groups");
        var vit = encoder.RequireVit(Id);
        var side = new LastSidePath(vit);
        var embedding = new LastInput(side);
        vit.Attach("last", embedding, EncoderPoint.AfterEmbedding);
        var attached = new List<(Block Block, LastBlock Module)>();
        for (int end = gap - 1; end < depth; end += gap)
        {
            var module = new LastBlock(side, encoder.EmbedDim, rank, heads, h.Int("layers"), isLast: end == depth - 1);
            encoder.Blocks[end].Attach("last", module, InsertionPoint.BlockOutput);
            attached.Add((encoder.Blocks[end], module));
        }
        return new HookTuner(this, h, encoder, attached.SelectMany(a => a.Module.parameters()), () =>
        {
            attached.ForEach(a => a.Block.Tuners.Remove(a.Block, "last"));
            vit.Tuners.Remove(vit, "last");
        });
    }
}

/// <summary>What one forward pass carries along the side network: the side state u and Σ zᵢ of the groups so far.</summary>
public sealed class LastSidePath
{
    readonly VisionTransformer vit;

    public LastSidePath(VisionTransformer vit) => this.vit = vit;

    public Tensor? State { get; private set; }
    public Tensor? SumOfInputs { get; private set; }

    /// <summary>Replaces the state and the sum. They outlive the block that made them (its dispose scope would free
    /// them), so they move to the caller's scope; the previous handles go now.</summary>
    public void Set(Tensor? state, Tensor? sum)
    {
        var (oldState, oldSum) = (State, SumOfInputs);
        State = state?.MoveToOuterDisposeScope();
        SumOfInputs = sum?.MoveToOuterDisposeScope();
        if (oldState is not null && !ReferenceEquals(oldState, state)) oldState.Dispose();
        if (oldSum is not null && !ReferenceEquals(oldSum, sum)) oldSum.Dispose();
    }

    /// <summary>A checkpointed block runs again alone in the backward, without the side state of the blocks before it.</summary>
    public void RefuseCheckpointing()
    {
        if (vit is { GradCheckpointing: true } && vit.training)
            throw new PeftSharpException("method 'last': its side network runs across blocks, which gradient checkpointing (one block at a time) cannot replay; train without it");
    }
}

/// <summary>z₀: the embedded tokens start the side path (u₀ = z₀, Σ = z₀), read without a gradient.</summary>
public sealed class LastInput : EncoderTuner
{
    readonly LastSidePath side;

    public LastInput(LastSidePath side) : base("LastInput") => this.side = side;

    public override Tensor Apply(EncoderPoint point, Tensor x, TokenLayout layout)
    {
        var z = x.detach();
        side.Set(z, z.alias());
        return x;
    }
}

/// <summary>One low-rank self-attention layer: x + W_o·Attn(W_q LN(x), W_k LN(x), W_v LN(x)) in r dimensions.</summary>
public sealed class LowRankSelfAttention : nn.Module<Tensor, Tensor>
{
    public LayerNorm norm;
    public Linear q;
    public Linear k;
    public Linear v;
    public Linear o;
    readonly int heads;

    public LowRankSelfAttention(int dim, int rank, int heads) : base("LowRankSelfAttention")
    {
        this.heads = heads;
        norm = LayerNorm(dim, eps: 1e-6);
        q = Linear(dim, rank);
        k = Linear(dim, rank);
        v = Linear(dim, rank);
        o = Linear(rank, dim);
        using (no_grad())
        {
            foreach (var l in new[] { q, k, v })
            {
                init.kaiming_uniform_(l.weight!, a: Math.Sqrt(5));
                init.zeros_(l.bias!);
            }
            init.zeros_(o.weight!);
            init.zeros_(o.bias!);
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], n = x.shape[1], r = q.weight!.shape[0];
        var h = norm.forward(x);
        Tensor Heads(Linear l) => l.forward(h).view(b, n, heads, r / heads).transpose(1, 2);
        var (qh, kh, vh) = (Heads(q), Heads(k), Heads(v));
        var scores = qh.matmul(kh.transpose(-2, -1)).mul_(1.0 / Math.Sqrt(r / heads));
        var attended = scores.softmax(-1).matmul(vh).transpose(1, 2).reshape(b, n, r);
        return x + o.forward(attended);
    }
}

/// <summary>Side block i at the output of group i's last backbone block: uᵢ = Fᵢ(uᵢ₋₁ + zᵢ), zᵢ the block's output read
/// without a gradient; the last one returns u_m − Σᵢ₌₀^{m−1} zᵢ in place of the block's output.</summary>
public sealed class LastBlock : BlockTuner
{
    public ModuleList<LowRankSelfAttention> layers;
    readonly LastSidePath side;
    readonly bool isLast;

    public LastBlock(LastSidePath side, int dim, int rank, int heads, int count, bool isLast) : base("LastBlock")
    {
        this.side = side;
        this.isLast = isLast;
        layers = nn.ModuleList(Enumerable.Range(0, count).Select(_ => new LowRankSelfAttention(dim, rank, heads)).ToArray());
        RegisterComponents();
    }

    /// <summary>The side network's attention mixes every token, so the last block computes them all.</summary>
    public override bool PrefixTokensStandAlone => false;

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        side.RefuseCheckpointing();
        var (state, sum) = (side.State ?? throw new InvalidOperationException("last: no side state (the embedding was not seen)"), side.SumOfInputs!);
        var z = x.detach();
        if (!state.shape.SequenceEqual(z.shape))
            throw new PeftSharpException($"method 'last': a group's output has {z.shape[1]} tokens, the side network {state.shape[1]} (a method that adds or drops tokens per block does not compose with LAST)");
        var u = state + z;
        foreach (var layer in layers) u = layer.forward(u);
        if (isLast)
        {
            var corrected = u - sum;
            side.Set(null, null);   // the pass is over: nothing holds its graph after it
            return corrected;
        }
        side.Set(u, sum + z);
        return x;
    }
}
