using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// DTL, Disentangled Transfer Learning (Fu et al., "DTL: Disentangled Transfer Learning for Visual Recognition",
/// AAAI 2024; heekhero/DTL, models/vision_transformer.py). A compact side network beside the frozen backbone: before
/// every block i a low-rank map z_i = x_i Aᵢᵀ Bᵢᵀ (A r×D Kaiming-uniform, B D×r zero, no bias) of the block's input is
/// added to a running sum S; after each block of the second half (blocks 6–11 of ViT-B's 12; ⌊L/2⌋…L−1 in general)
/// x ← Block(x) + g(S) with g(s) = s·σ(βs), β = 100. Since B starts at zero, the model starts as the base.
/// DTL+ (fusion k &gt; 0) passes g(S) of the patch tokens through one shared depthwise k×k conv (no bias) on the patch
/// grid; the prefix tokens skip it, as in the authors' code. Parameters 2DrL (+ Dk²): 36,864 for ViT-B at r = 2.
/// <para>Where we differ from the authors' code: their head reads the mean of the patch tokens, normed after pooling;
/// here the backbone's own pooling and head are kept, as for every method. Not mergeable (g is non-linear). The side
/// path spans blocks, so DTL refuses gradient checkpointing (which replays one block at a time).</para>
/// </summary>
public sealed class Dtl : TunerMethod
{
    public override CapacityKnob? Capacity => new("rank", ["1", "2"], ["1", "2", "4", "8", "16"]);
    public override string Id => "dtl";
    public override string Summary => "low-rank side path summed over blocks, added (swish) after the second half's blocks";
    public override bool Mergeable => false;
    public override string Reference => "Fu et al., AAAI 2024 (DTL); heekhero/DTL (r 2, β 100, blocks 0–11 → 6–11), backbone pooling kept";
    public override PublishedFigure? Published => new(76.76, 74.58, "V-PETL Bench (19-task mean; group means derived; best test epoch)");

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("rank", 2, new[] { 1, 2, 4, 8 }, "rank r of each block's side map"),
        HyperSpec.Double("beta", 100, Array.Empty<double>(), "β of the swish g(s) = s·σ(βs)", min: 0),
        HyperSpec.Int("fusion", 0, Array.Empty<int>(), "DTL+: kernel size of the depthwise conv on the patch grid (0 = off, odd)", min: 0),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        int fusion = h.Int("fusion");
        if (fusion > 0 && fusion % 2 == 0)
            throw new PeftSharpException($"method 'dtl': 'fusion' must be odd (a centred kernel) or 0, got {fusion}");
        var vit = fusion > 0 ? encoder.RequireVit(Id) : encoder.Vit;
        var side = new DtlSidePath(encoder.EmbedDim, fusion, h.Double("beta"), vit) { LastBlock = encoder.Blocks.Count - 1 };
        int depth = encoder.Blocks.Count, firstAdd = depth / 2;
        var attached = new List<(Block Block, string Name, BlockTuner Module)>();
        for (int i = 0; i < depth; i++)
        {
            var tap = new DtlTap(side, i, encoder.EmbedDim, h.Int("rank"), adds: i >= firstAdd);
            var points = tap.Adds ? new[] { InsertionPoint.BlockInput, InsertionPoint.BlockOutput } : new[] { InsertionPoint.BlockInput };
            encoder.Blocks[i].Attach("dtl", tap, points);
            attached.Add((encoder.Blocks[i], "dtl", tap));
        }
        // The shared DTL+ conv lives in the first block's tap (one copy in the state dict).
        var parameters = attached.SelectMany(a => a.Module.parameters()).Distinct<Parameter>(ReferenceEqualityComparer.Instance);
        return new HookTuner(this, h, encoder, parameters, () => attached.ForEach(a => a.Block.Tuners.Remove(a.Block, a.Name)));
    }
}

/// <summary>The state one forward pass carries along DTL's side path: the running sum S, reset at block 0.</summary>
public sealed class DtlSidePath
{
    readonly VisionTransformer? vit;

    public DtlSidePath(int dim, int fusion, double beta, VisionTransformer? vit)
    {
        Beta = beta;
        this.vit = vit;
        Fusion = fusion > 0 ? Conv2d(dim, dim, fusion, padding: fusion / 2, groups: dim, bias: false) : null;
    }

    public double Beta { get; }
    /// <summary>DTL+'s shared depthwise conv (PyTorch's default init, as in the authors' code), or null.</summary>
    public Conv2d? Fusion { get; }
    public Tensor? Sum { get; private set; }
    public bool IsLast(int index) => index == LastBlock;
    public int LastBlock { get; init; }

    /// <summary>Replaces the running sum. The sum outlives the block that made it (the block's dispose scope would free
    /// it), so it moves to the caller's scope; the previous handle goes now (autograd holds what its backward needs).</summary>
    public void Set(Tensor? sum)
    {
        var previous = Sum;
        Sum = sum?.MoveToOuterDisposeScope();
        if (previous is not null && !ReferenceEquals(previous, sum)) previous.Dispose();
    }

    /// <summary>A checkpointed block runs again alone in the backward, without the sum the blocks before it built.</summary>
    public void RefuseCheckpointing()
    {
        if (vit is { GradCheckpointing: true } && vit.training)
            throw new PeftSharpException("method 'dtl': its side path runs across blocks, which gradient checkpointing (one block at a time) cannot replay; train without it");
    }
}

/// <summary>Block i's part of DTL: at the block input, S ← S + x Aᵀ Bᵀ (S ← that, at block 0); at the block output of
/// the second half's blocks, x ← x + g(S).</summary>
public sealed class DtlTap : BlockTuner
{
    public Linear lora_A;
    public Linear lora_B;
    public Conv2d? fusion;
    readonly DtlSidePath side;
    readonly int index;

    public DtlTap(DtlSidePath side, int index, int dim, int rank, bool adds) : base("DtlTap")
    {
        this.side = side;
        this.index = index;
        Adds = adds;
        lora_A = Linear(dim, rank, hasBias: false);
        lora_B = Linear(rank, dim, hasBias: false);
        using (no_grad())
        {
            init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
            init.zeros_(lora_B.weight!);
        }
        if (index == 0) fusion = side.Fusion;
        RegisterComponents();
    }

    public bool Adds { get; }

    /// <summary>Token by token, and the DTL+ conv leaves the prefix tokens out of the patch grid.</summary>
    public override bool PrefixTokensStandAlone => true;

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (point == InsertionPoint.BlockInput)
        {
            Accumulate(x);
            return x;
        }
        var y = x + Activated(side.Sum ?? throw new InvalidOperationException("dtl: no side path (block 0 did not run)"), x.shape[1], layout);
        if (side.IsLast(index)) side.Set(null);   // the pass is over: nothing holds its graph after it
        return y;
    }

    void Accumulate(Tensor x)
    {
        side.RefuseCheckpointing();
        var z = lora_B.forward(lora_A.forward(x));
        if (index == 0 || side.Sum is null)
        {
            side.Set(z);
            return;
        }
        if (!side.Sum.shape.SequenceEqual(z.shape))
            throw new PeftSharpException($"method 'dtl': block {index} sees {z.shape[1]} tokens, the side path {side.Sum.shape[1]} (a method that adds or drops tokens per block does not compose with DTL)");
        side.Set(side.Sum + z);
    }

    /// <summary>g(S) for the first <paramref name="tokens"/> tokens (all, unless the block computes its prefix alone),
    /// the patch part through the DTL+ conv when there is one.</summary>
    Tensor Activated(Tensor sum, long tokens, TokenLayout layout)
    {
        var s = tokens < sum.shape[1] ? sum[.., ..(int)tokens] : sum;
        var g = s * sigmoid(s * side.Beta);
        if (side.Fusion is not Conv2d conv || s.shape[1] <= layout.PatchStart) return g;
        long b = g.shape[0], d = g.shape[2];
        int start = layout.PatchStart;
        var grid = g[.., start..].reshape(b, layout.GridHeight, layout.GridWidth, d).permute(0, 3, 1, 2);
        var fused = conv.forward(grid).permute(0, 2, 3, 1).reshape(b, -1, d);
        return cat(new[] { g[.., ..start], fused }, 1);
    }
}
