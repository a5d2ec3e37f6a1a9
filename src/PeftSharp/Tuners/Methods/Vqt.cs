using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// VQT, visual query tuning (Tu et al., "Visual Query Tuning: Towards Effective Usage of Intermediate Representations
/// for Parameter and Memory Efficient Transfer Learning", CVPR 2023), in the form of the unifying study's code
/// (OSU-MLB/ViT_PEFT_Vision model/vqt.py). Each block gets n learnable query tokens Pₗ that pass through the block as
/// tokens do (norm1, attention, projection, residual, norm2, MLP, residual) but attend only to the block's own tokens:
/// keys and values come from the block's tokens alone, so the tokens (and the backbone's output) are unchanged. Each
/// query output summarises its block; the final class feature and the 12·n summaries, each L2-normalised, are
/// combined by learned weights w (init 1) into the feature the head reads.
/// Parameters 12·n·D + 12·n + 1 (92,281 on ViT-B at n = 10). Not mergeable (its tokens are extra computation).
/// <para>Where that code has hazards, this follows the paper: (1) it keeps the block's first n tokens after removing
/// the queries (the class token and patches) instead of the query outputs; here the query outputs Z′ₗ, as the paper
/// defines them. (2) F.normalize's default axis on [B, n, D] normalises over the tokens, and on the class feature
/// [B, 1, D] reduces it to its signs; here every token is normalised over its D channels. The combination by learned
/// weights (rather than the paper's linear head over the concatenation) is kept, so the head stays D → classes and
/// the count is the code's.</para>
/// <para>Other methods' hooks inside the block (adapters at the attention or MLP output) are not applied to the query
/// tokens; wrapped layers (LoRA on qkv) are. Queries use their own drop-path draws. Gradient checkpointing is refused:
/// the summaries leave the blocks outside the checkpoint.</para>
/// </summary>
public sealed class Vqt : TunerMethod
{
    public override CapacityKnob? Capacity => new("prompts", ["5", "10"], ["1", "5", "10", "20"]);
    public override string Id => "vqt";
    public override string Summary => "n query tokens per block summarise its tokens without changing them; summaries and class feature combined by learned weights";
    public override bool Mergeable => false;
    public override string Reference => "Tu et al., CVPR 2023 (VQT); the unifying study's vqt.py, with the paper's query outputs and per-token normalisation";

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("prompts", 10, new[] { 5, 10, 20, 50 }, "number of query tokens n per block"),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout on the query tokens", min: 0, max: 0.99),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequireVit(Id);
        var summaries = new VqtSummaries(vit, encoder.Blocks.Count);
        var queries = encoder.Blocks.Select((block, i) =>
        {
            var q = new VqtQueries(VptBase.NewPrompts(h.Int("prompts"), vit), h.Double("dropout"), block, i, summaries);
            block.attn.AttachKeyValueTuner("vqt", q);
            return q;
        }).ToList();
        var pooling = new VqtPooling(vit.fc_norm, summaries, encoder.Blocks.Count * h.Int("prompts") + 1);
        TargetMatcher.Wrap(vit, "fc_norm", pooling);
        var parameters = queries.SelectMany(q => q.parameters()).Append(pooling.vqt_combine);
        return new HookTuner(this, h, encoder, parameters, () => { });
    }
}

/// <summary>The current forward pass's query outputs, one slot per block, between the blocks and the pooling.</summary>
public sealed class VqtSummaries
{
    readonly Tensor?[] slots;

    public VqtSummaries(VisionTransformer vit, int depth)
    {
        Vit = vit;
        slots = new Tensor?[depth];
    }

    public VisionTransformer Vit { get; }

    /// <summary>Stores block <paramref name="block"/>'s normalised query outputs [B, n, D] beyond the block's dispose scope.</summary>
    public void Put(int block, Tensor summary) => slots[block] = summary.MoveToOuterDisposeScope();

    /// <summary>Every block's summaries in block order, emptied for the next pass.</summary>
    public Tensor[] Take()
    {
        if (slots.Any(s => s is null))
            throw new InvalidOperationException("VQT pooling ran without every block's query outputs (run the whole encoder)");
        var all = slots.Select(s => s!).ToArray();
        Array.Clear(slots);
        return all;
    }
}

/// <summary>One block's query tokens. Attached as a key/value tuner to see the block's keys and values (it leaves them
/// as they are); from them it runs its queries through the block's layers and stores their outputs.</summary>
public sealed class VqtQueries : KeyValueTuner
{
    public Parameter query_tokens;
    public ParallelDropout prompt_dropout;
    readonly Func<Block> host;   // not a field of module type: the block is the parent, not a child
    readonly int index;
    readonly VqtSummaries summaries;

    public VqtQueries(Parameter queries, double dropout, Block block, int index, VqtSummaries summaries) : base("VqtQueries")
    {
        query_tokens = queries;
        prompt_dropout = new ParallelDropout(dropout);
        host = () => block;
        this.index = index;
        this.summaries = summaries;
        RegisterComponents();
    }

    public override (Tensor Keys, Tensor Values) Extend(Tensor keys, Tensor values)
    {
        if (summaries.Vit.GradCheckpointing && summaries.Vit.training)
            throw new PeftSharpException("method 'vqt' does not support gradient checkpointing: its query outputs leave the blocks outside the checkpoint");
        summaries.Put(index, F.normalize(QueryOutputs(keys, values), dim: -1));
        return (keys, values);
    }

    /// <summary>The queries through the block: h = P + ls1(proj(softmax(q kᵀ/√d) v)), out = h + ls2(mlp(norm2 h)), with q
    /// from qkv(norm1 P) and k, v the block's own.</summary>
    Tensor QueryOutputs(Tensor keys, Tensor values)
    {
        var block = host();
        long batch = keys.shape[0], heads = keys.shape[1], headDim = keys.shape[3], dim = heads * headDim;
        var p = prompt_dropout.forward(query_tokens).unsqueeze(0).expand(batch, -1, -1);
        var q = block.attn.qkv.forward(block.norm1.forward(p))[.., .., ..(int)dim];
        q = q.reshape(batch, -1, heads, headDim).transpose(1, 2);
        var scores = q.matmul(keys.transpose(-2, -1)).mul(1.0 / Math.Sqrt(headDim));
        var attended = block.attn.attn_drop.forward(scores.softmax(-1)).matmul(values);
        var y = block.attn.proj_drop.forward(block.attn.proj.forward(attended.transpose(1, 2).reshape(batch, -1, dim)));
        var h = p + block.drop_path1.forward(block.ls1.forward(y));
        return h + block.drop_path2.forward(block.ls2.forward(block.mlp.forward(block.norm2.forward(h))));
    }
}

/// <summary>Wraps fc_norm: the pooled (class) feature and every block's summaries, each L2-normalised, weighted by
/// <c>vqt_combine</c> (the code's combine_layer, init 1) and summed; then fc_norm as before.</summary>
public sealed class VqtPooling : ModuleWrapper
{
    public Parameter vqt_combine;
    readonly VqtSummaries summaries;

    public VqtPooling(Module<Tensor, Tensor> fcNorm, VqtSummaries summaries, int features) : base("VqtPooling", fcNorm)
    {
        vqt_combine = new Parameter(ones(features));
        this.summaries = summaries;
        RegisterComponents();
    }

    public override Tensor forward(Tensor pooled)
    {
        var parts = summaries.Take().Append(F.normalize(pooled, dim: -1).unsqueeze(1)).ToArray();
        var all = cat(parts, 1);                                                   // [B, 12n + 1, D], class feature last
        var combined = vqt_combine.to(all.dtype).unsqueeze(0).unsqueeze(0).matmul(all).squeeze(1);
        return base_layer.forward(combined);
    }
}
