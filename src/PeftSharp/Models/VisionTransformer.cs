// A timm-compatible Vision Transformer (timm 1.0.x models/vision_transformer.py): same submodule names, so the
// state-dict keys are timm's and a timm checkpoint loads strictly; same arithmetic, so outputs match to float error.
// Tuners attach at the named insertion points of each block (see InsertionPoints.cs); the model knows no method.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Models;

/// <summary>Image to patch tokens: a Conv2d with kernel = stride = patch size, flattened row-major to [B, N, D].</summary>
public sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    public Module<Tensor, Tensor> proj;

    public PatchEmbed(int patchSize, int inChans, int embedDim, bool bias) : base("PatchEmbed")
    {
        proj = nn.Conv2d(inChans, embedDim, kernel_size: (patchSize, patchSize), stride: (patchSize, patchSize), bias: bias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => proj.forward(x).flatten(2).transpose(1, 2);
}

/// <summary>Multi-head self-attention with a fused qkv projection (rows q|k|v, each head-major).</summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    public Module<Tensor, Tensor> qkv;
    public Dropout attn_drop;
    public Module<Tensor, Tensor> proj;
    public Dropout proj_drop;
    readonly int numHeads;
    readonly double attnDropRate;
    readonly Attachments<KeyValueTuner> keyValueTuners = new();

    public Attention(int dim, int numHeads, bool qkvBias, double attnDrop, double projDrop) : base("Attention")
    {
        this.numHeads = numHeads;
        attnDropRate = attnDrop;
        qkv = nn.Linear(dim, dim * 3, hasBias: qkvBias);
        attn_drop = nn.Dropout(attnDrop);
        proj = nn.Linear(dim, dim);
        proj_drop = nn.Dropout(projDrop);
        RegisterComponents();
    }

    public int NumHeads => numHeads;
    public Attachments<KeyValueTuner> KeyValueTuners => keyValueTuners;

    public override Tensor forward(Tensor x) => forward(x, null);

    /// <param name="mask">Additive attention mask [N, N] (−inf where masked), or null.</param>
    /// <param name="queryTokens">When &gt; 0, only the first queryTokens tokens attend (keys and values still come from
    /// every token), so the output is [B, queryTokens, C].</param>
    public Tensor forward(Tensor x, Tensor? mask, int queryTokens = 0)
    {
        var qkvOut = qkv.forward(x);
        if (queryTokens >= x.shape[1]) queryTokens = 0;   // every token asks
        if (queryTokens > 0 && mask is not null) mask = mask[..queryTokens];
        var y = HeadByHead(qkvOut) ? HeadByHeadAttention(qkvOut, mask, queryTokens) : BatchedAttention(qkvOut, mask, queryTokens);
        return proj_drop.forward(proj.forward(y));
    }

    /// <summary>Whether to attend head by head on views of the qkv output rather than on one permuted copy of it
    /// (CPU only; key/value tuners extend the batched [B, heads, N, head_dim] layout, and attention dropout would draw
    /// its masks in another order). Measured here (2 threads): inference is as fast or faster head by head at every
    /// shape tried (ViT-Tiny at 65 tokens 3.8 → 2.9 ms a block; ViT-B at 197 tokens level); with autograd it pays for
    /// few heads (3 heads: 10.5 → 9.4 ms forward and backward) but not for 12, where the per-head operations cost more
    /// than the copies they save (ViT-B at 50 tokens: 6.9 → 8.2 ms). Very small blocks lose a little with autograd
    /// (CLIP-tiny's text tower, 4 heads at 32 tokens and width 128: 1.03 → 1.18 ms).</summary>
    bool HeadByHead(Tensor qkvOut) =>
        Interop.CpuOnly.CpuAttentionKernels(qkvOut.device_type) && !keyValueTuners.Items.Any() && (!training || attnDropRate == 0)
        && (numHeads <= 4 || !qkvOut.requires_grad);

    /// <summary><see cref="ExplicitAttention"/> for each head on column views of the qkv output [B, N, 3C] (timm's
    /// order: q heads, k heads, v heads). Batched matrix products read the views with their row stride, so q, k and v
    /// are never copied out; the heads' outputs are concatenated once, and the backward gathers the gradients of q, k
    /// and v with one concatenation (the split's).</summary>
    Tensor HeadByHeadAttention(Tensor qkvOut, Tensor? mask, int queryTokens)
    {
        var parts = qkvOut.split(qkvOut.shape[2] / (3 * numHeads), -1);
        var heads = new Tensor[numHeads];
        for (int h = 0; h < numHeads; h++)
        {
            var q = queryTokens > 0 ? parts[h][.., ..queryTokens] : parts[h];
            heads[h] = ExplicitAttention(q, parts[numHeads + h], parts[2 * numHeads + h], mask);
        }
        return cat(heads, -1);
    }

    /// <summary>All heads at once on q, k, v laid out [B, heads, N, head_dim]; the path key/value tuners extend.</summary>
    Tensor BatchedAttention(Tensor qkvOut, Tensor? mask, int queryTokens)
    {
        long b = qkvOut.shape[0], n = qkvOut.shape[1], c = qkvOut.shape[2] / 3;
        // One contiguous copy to [3, B, heads, N, head_dim]: the attention products then read q, k and v as they are
        // (matmul would otherwise copy each permuted view itself) and autograd keeps that one buffer for them.
        var parts = qkvOut.reshape(b, n, 3, numHeads, c / numHeads).permute(2, 0, 3, 1, 4).contiguous().unbind(0);
        Tensor q = parts[0], k = parts[1], v = parts[2];
        if (queryTokens > 0) (q, n) = (q[.., .., ..queryTokens], queryTokens);
        foreach (var tuner in keyValueTuners.Items)
        {
            long before = k.shape[2];
            (k, v) = tuner.Extend(k, v);
            // Prefix keys are visible from every position: extend the mask with zero columns in front.
            if (mask is not null && k.shape[2] > before)
                mask = cat(new[] { zeros(mask.shape[0], k.shape[2] - before, dtype: mask.dtype, device: mask.device), mask }, 1);
        }
        var y = Interop.CpuOnly.CpuAttentionKernels(q.device_type) ? ExplicitAttention(q, k, v, mask) : F.scaled_dot_product_attention(q, k, v, mask, training ? attnDropRate : 0.0, false);
        return y.transpose(1, 2).reshape(b, n, c);
    }

    public void AttachKeyValueTuner(string name, KeyValueTuner tuner) => keyValueTuners.Add(this, name, tuner);

    /// <summary>softmax(q·kᵀ/√d + mask)·v as three kernels (timm's non-fused path). On CPU, libtorch's fused
    /// scaled_dot_product_attention is 2.5× slower for short sequences (65 tokens, head width 64: 15 vs 6 ms forward and
    /// backward per block in float32, 32 vs 4 ms in bfloat16), measured here. The scale multiplies the scores in place
    /// rather than q (timm scales q): no scaled copy of q is kept for the backward.</summary>
    Tensor ExplicitAttention(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        var scores = q.matmul(k.transpose(-2, -1)).mul_(1.0 / Math.Sqrt(q.shape[^1]));
        if (mask is not null) scores = scores.add(mask);
        return attn_drop.forward(scores.softmax(-1)).matmul(v);
    }
}

/// <summary>fc1 → act → drop → fc2 → drop.</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    public Module<Tensor, Tensor> fc1;
    public Module<Tensor, Tensor> act;
    public Dropout drop1;
    public Module<Tensor, Tensor> fc2;
    public Dropout drop2;

    public Mlp(int dim, int hidden, string actLayer, double drop) : base("Mlp")
    {
        fc1 = nn.Linear(dim, hidden);
        act = actLayer == "quick_gelu" ? new QuickGelu() : nn.GELU();
        drop1 = nn.Dropout(drop);
        fc2 = nn.Linear(hidden, dim);
        drop2 = nn.Dropout(drop);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var hidden = fc1.forward(x);
        // Where no gradient flows through fc1's output (inference), nothing else holds it, so exact GELU overwrites it
        // instead of writing a new buffer: 0.26–0.46 ms less of about 11 ms a ViT-Tiny MLP at batch 64, measured here.
        hidden = act is GELU && !hidden.requires_grad ? hidden.gelu_() : act.forward(hidden);
        return drop2.forward(fc2.forward(drop1.forward(hidden)));
    }
}

/// <summary>OpenAI CLIP's activation: x · sigmoid(1.702 x).</summary>
public sealed class QuickGelu : nn.Module<Tensor, Tensor>
{
    public QuickGelu() : base("QuickGELU") { }
    public override Tensor forward(Tensor x) => x * sigmoid(1.702 * x);
}

/// <summary>Per-channel learnable scale of a residual branch (CaiT / timm LayerScale); key "gamma".</summary>
public sealed class LayerScale : nn.Module<Tensor, Tensor>
{
    public Parameter gamma;

    public LayerScale(int dim, double initValue) : base("LayerScale")
    {
        gamma = new Parameter(full(dim, initValue));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => x * gamma;
}

/// <summary>Stochastic depth: drops a whole residual branch per sample during training, scaled by 1/keep.</summary>
public sealed class DropPath : nn.Module<Tensor, Tensor>
{
    readonly double rate;

    public DropPath(double rate) : base("DropPath") => this.rate = rate;

    public override Tensor forward(Tensor x)
    {
        if (rate == 0 || !training) return x;
        double keep = 1 - rate;
        var shape = new long[x.dim()];
        Array.Fill(shape, 1L);
        shape[0] = x.shape[0];
        var mask = empty(shape, dtype: x.dtype, device: x.device).bernoulli_(keep).div_(keep);
        return x * mask;
    }
}

/// <summary>A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), with tuner insertion points.</summary>
public sealed class Block : nn.Module<Tensor, Tensor>
{
    public Module<Tensor, Tensor> norm1;
    public Attention attn;
    public Module<Tensor, Tensor> ls1;
    public Module<Tensor, Tensor> drop_path1;
    public Module<Tensor, Tensor> norm2;
    public Mlp mlp;
    public Module<Tensor, Tensor> ls2;
    public Module<Tensor, Tensor> drop_path2;
    readonly PointAttachments<InsertionPoint, BlockTuner> tuners = new();

    public Block(int dim, int numHeads, double mlpRatio, bool qkvBias, double? initValues, double projDrop,
                 double attnDrop, double dropPath, double normEps, string actLayer) : base("Block")
    {
        norm1 = nn.LayerNorm(dim, eps: normEps);
        attn = new Attention(dim, numHeads, qkvBias, attnDrop, projDrop);
        ls1 = initValues is double g1 ? new LayerScale(dim, g1) : nn.Identity();
        drop_path1 = dropPath > 0 ? new DropPath(dropPath) : nn.Identity();
        norm2 = nn.LayerNorm(dim, eps: normEps);
        mlp = new Mlp(dim, (int)(dim * mlpRatio), actLayer, projDrop);
        ls2 = initValues is double g2 ? new LayerScale(dim, g2) : nn.Identity();
        drop_path2 = dropPath > 0 ? new DropPath(dropPath) : nn.Identity();
        RegisterComponents();
    }

    public PointAttachments<InsertionPoint, BlockTuner> Tuners => tuners;

    /// <summary>Registers <paramref name="tuner"/> under <paramref name="name"/> (its state-dict prefix in this block)
    /// and calls it at each of <paramref name="points"/>, after tuners attached earlier.</summary>
    public void Attach(string name, BlockTuner tuner, params InsertionPoint[] points) => tuners.Add(this, name, tuner, points);

    /// <summary>True when every tuner of this block gives the prefix tokens outputs that depend on them alone, so the
    /// block can compute the outputs of its leading prefix tokens alone with the same values (see the outputTokens of
    /// <see cref="forward(Tensor, TokenLayout, Tensor?, int)"/>).</summary>
    public bool PrefixTokensStandAlone => tuners.Items.All(t => t.PrefixTokensStandAlone);

    public override Tensor forward(Tensor x) => forward(x, TokenLayout.Sequence(), null);

    /// <param name="outputTokens">When &gt; 0, computes only the first outputTokens tokens' outputs ([B, outputTokens, D]):
    /// every token still gives keys and values, but the attention queries, projection and MLP of the others are
    /// skipped. Exact when outputTokens ≤ the prefix tokens and <see cref="PrefixTokensStandAlone"/>.</param>
    public Tensor forward(Tensor x, TokenLayout layout, Tensor? mask, int outputTokens = 0)
    {
        // The block's temporaries die with it; autograd keeps what its backward needs and frees that as the backward
        // passes. Without this scope TorchSharp would keep every temporary until the caller's scope ends, so a method
        // that saves little for its backward would take as much memory as full fine-tuning.
        using var scope = NewDisposeScope();
        x = tuners.Sequential(InsertionPoint.BlockInput, x, layout);
        x = Branch(x, layout, norm1, h => attn.forward(h, mask, outputTokens), ls1, drop_path1, InsertionPoint.AttnInput,
                   InsertionPoint.AttnOutput, InsertionPoint.AttnParallelResidual, InsertionPoint.AttnParallelNormed,
                   InsertionPoint.AttnScale);
        x = tuners.Sequential(InsertionPoint.BetweenBranches, x, layout);
        x = Branch(x, layout, norm2, mlp.forward, ls2, drop_path2, InsertionPoint.MlpInput, InsertionPoint.MlpOutput,
                   InsertionPoint.MlpParallelResidual, InsertionPoint.MlpParallelNormed, InsertionPoint.MlpScale);
        return scope.MoveToOuter(tuners.Sequential(InsertionPoint.BlockOutput, x, layout));
    }

    Tensor Branch(Tensor x, TokenLayout layout, Module<Tensor, Tensor> norm, Func<Tensor, Tensor> sublayer,
                  Module<Tensor, Tensor> ls, Module<Tensor, Tensor> dropPath, InsertionPoint input,
                  InsertionPoint output, InsertionPoint parallelResidual, InsertionPoint parallelNormed,
                  InsertionPoint scale)
    {
        var normed = norm.forward(x);
        var y = sublayer(tuners.Sequential(input, normed, layout));
        if (y.shape[1] < x.shape[1])
        {
            // The sublayer computed a leading subset of the tokens: the residual stream follows it.
            x = x[.., ..(int)y.shape[1]];
            normed = normed[.., ..(int)y.shape[1]];
        }
        y = dropPath.forward(ls.forward(tuners.Sequential(output, y, layout)));
        // Parallel branches get their own layer scale and drop-path draw, as in the unifying study's block.
        foreach (var t in tuners.At(parallelResidual)) y = y + dropPath.forward(ls.forward(t.Apply(parallelResidual, x, layout)));
        foreach (var t in tuners.At(parallelNormed)) y = y + dropPath.forward(ls.forward(t.Apply(parallelNormed, normed, layout)));
        return x + tuners.Sequential(scale, y, layout);
    }
}

/// <summary>The Vision Transformer, timm layout: patch_embed, cls_token, reg_token, pos_embed, pos_drop, norm_pre,
/// blocks, norm, fc_norm, head_drop, head.</summary>
public sealed class VisionTransformer : nn.Module<Tensor, Tensor>, IPatchEncoder
{
    public PatchEmbed patch_embed;
    public Parameter? cls_token;
    public Parameter? reg_token;
    public Parameter pos_embed;
    public Dropout pos_drop;
    public Module<Tensor, Tensor> norm_pre;
    public ModuleList<Block> blocks;
    public Module<Tensor, Tensor> norm;
    public Module<Tensor, Tensor> fc_norm;
    public Dropout head_drop;
    public Module<Tensor, Tensor> head;
    readonly PointAttachments<EncoderPoint, EncoderTuner> tuners = new();

    public VisionTransformer(VitConfig config) : base("VisionTransformer")
    {
        Config = config.Validate();
        var c = Config;
        patch_embed = new PatchEmbed(c.PatchSize, c.InChans, c.EmbedDim, bias: !c.PreNorm);
        cls_token = c.ClassToken ? new Parameter(zeros(1, 1, c.EmbedDim)) : null;
        reg_token = c.RegTokens > 0 ? new Parameter(zeros(1, c.RegTokens, c.EmbedDim)) : null;
        int embedLen = c.NoEmbedClass ? c.NumPatches : c.NumPatches + c.NumPrefixTokens;
        pos_embed = new Parameter(zeros(1, embedLen, c.EmbedDim));
        pos_drop = nn.Dropout(c.PosDropRate);
        norm_pre = c.PreNorm ? nn.LayerNorm(c.EmbedDim, eps: c.NormEps) : nn.Identity();
        // Stochastic depth grows linearly with depth, as timm's dpr.
        blocks = nn.ModuleList(Enumerable.Range(0, c.Depth).Select(i => new Block(
            c.EmbedDim, c.NumHeads, c.MlpRatio, c.QkvBias, c.InitValues, c.ProjDropRate, c.AttnDropRate,
            c.Depth > 1 ? c.DropPathRate * i / (c.Depth - 1) : c.DropPathRate, c.NormEps, c.ActLayer)).ToArray());
        norm = c.FinalNorm && !c.UseFcNorm ? nn.LayerNorm(c.EmbedDim, eps: c.NormEps) : nn.Identity();
        fc_norm = c.FinalNorm && c.UseFcNorm ? nn.LayerNorm(c.EmbedDim, eps: c.NormEps) : nn.Identity();
        head_drop = nn.Dropout(c.DropRate);
        head = c.NumClasses > 0 ? nn.Linear(c.EmbedDim, c.NumClasses, hasBias: c.HeadBias) : nn.Identity();
        RegisterComponents();
        InitWeights.Vit(this);
    }

    public VitConfig Config { get; private set; }

    /// <summary>Run each block checkpointed while training (<see cref="GradCheckpoint"/>; timm's
    /// set_grad_checkpointing): far less activation memory for a second forward pass in the backward.</summary>
    public bool GradCheckpointing { get; set; }
    public int EmbedDim => Config.EmbedDim;
    public int PatchSize => Config.PatchSize;
    public PointAttachments<EncoderPoint, EncoderTuner> Tuners => tuners;

    public void Attach(string name, EncoderTuner tuner, params EncoderPoint[] points) => tuners.Add(this, name, tuner, points);

    /// <summary>Replaces the classifier (a new zero-bias trunc-normal Linear, or Identity for 0 classes).</summary>
    public void ResetClassifier(int numClasses)
    {
        var newHead = numClasses > 0 ? nn.Linear(EmbedDim, numClasses, hasBias: Config.HeadBias) : (Module<Tensor, Tensor>)nn.Identity();
        if (newHead is Linear linear) InitWeights.TimmLinear(linear);
        ModuleSurgery.Replace(this, "head", newHead.to(pos_embed.device));
        Config = Config with { NumClasses = numClasses };
    }

    /// <summary>Logits, as timm's forward. With class-token pooling the last block computes the class token alone
    /// (<see cref="ForwardFeatures(Tensor, out TokenLayout, int, int, TokenLayout?, bool?, bool)"/>, pooledOnly).</summary>
    public override Tensor forward(Tensor x) => ForwardHead(ForwardFeatures(x, out var layout, 0, Config.Depth, pooledOnly: true), layout);

    /// <summary>Tokens after the final norm, [B, prefix + prompts + patches, D] (timm's forward_features).</summary>
    public Tensor ForwardFeatures(Tensor x, out TokenLayout layout) => ForwardFeatures(x, out layout, 0, Config.Depth);

    /// <summary>Runs blocks [firstBlock, endBlock); from block 0 the input is an image batch, else the tokens
    /// entering firstBlock (to run a frozen prefix of the network separately). The final norm runs when
    /// <paramref name="finalNorm"/> is true (by default when endBlock = depth).</summary>
    /// <param name="pooledOnly">Only the tokens <see cref="ForwardHead(Tensor, TokenLayout, bool)"/> reads are needed:
    /// with class-token pooling the last block then computes the class token alone (its queries, projection and MLP
    /// for the other tokens, about 7 % of a forward and backward at 65 tokens, are skipped), where its tuners allow
    /// it (<see cref="Block.PrefixTokensStandAlone"/>). The result is then [B, 1, D], the same values as the full run's first token.</param>
    public Tensor ForwardFeatures(Tensor x, out TokenLayout layout, int firstBlock, int endBlock, TokenLayout? inputLayout = null,
                                  bool? finalNorm = null, bool pooledOnly = false)
    {
        if (firstBlock == 0)
        {
            if (x.dim() != 4 || x.shape[1] != Config.InChans)
                throw new PeftSharpException($"model input: expected [B, {Config.InChans}, H, W], got [{string.Join(", ", x.shape)}]");
            layout = InputLayout(x);
            x = norm_pre.forward(tuners.Sequential(EncoderPoint.AfterEmbedding, PositionEmbed(patch_embed.forward(x), layout), layout));
        }
        else
        {
            layout = inputLayout ?? new TokenLayout(Config.NumPrefixTokens, Config.GridSize, Config.GridSize);
        }
        int last = Config.Depth - 1;
        bool classTokenOnly = pooledOnly && endBlock == Config.Depth && Config.GlobalPool == "token" && blocks[last].PrefixTokensStandAlone;
        var trainable = GradCheckpointing && training && is_grad_enabled()
            ? parameters().Where(p => p.requires_grad).Cast<Tensor>().ToList() : null;
        for (int i = firstBlock; i < endBlock; i++)
        {
            var block = blocks[i];
            int outputTokens = classTokenOnly && i == last ? 1 : 0;
            var output = trainable is null
                ? block.forward(x, layout, null, outputTokens)
                : GradCheckpoint.Run((input, l) => block.forward(input, l, null, outputTokens), x, layout, trainable);
            // A block's input is no one else's once the block has run (autograd holds what its backward needs), so its
            // handle goes now rather than with the caller's scope: without autograd every block's tokens stayed
            // allocated until the batch ended. The caller's own input stays theirs.
            if (i > firstBlock || firstBlock == 0) x.Dispose();
            x = output;
        }
        return finalNorm ?? endBlock == Config.Depth ? norm.forward(x) : x;
    }

    /// <summary>timm's forward_intermediates(x, indices, norm, output_fmt='NCHW', intermediates_only=True): the patch
    /// tokens after each block in <paramref name="indices"/> (absolute block indices, in the order given), prefix
    /// tokens and prompts dropped, as [B, D, grid height, grid width] feature maps — what ViTDet-style pyramids and
    /// segmentation decoders read. Blocks after the last index are not run. <paramref name="norm"/> applies the
    /// final norm to each map, as timm does.</summary>
    public List<Tensor> ForwardIntermediates(Tensor x, IReadOnlyList<int> indices, bool norm = false) =>
        ForwardIntermediates(x, indices, norm, 0, null);

    /// <summary><see cref="ForwardIntermediates(Tensor, IReadOnlyList{int}, bool)"/> from block
    /// <paramref name="firstBlock"/>: then <paramref name="x"/> is the tokens entering it, laid out as
    /// <paramref name="inputLayout"/>.</summary>
    public List<Tensor> ForwardIntermediates(Tensor x, IReadOnlyList<int> indices, bool norm, int firstBlock, TokenLayout? inputLayout)
    {
        if (indices.Count == 0) throw new PeftSharpException("indices", "forward_intermediates needs at least one block index");
        foreach (int i in indices)
            if (i < firstBlock) throw new PeftSharpException("indices", $"block index {i} is before block {firstBlock}, where this pass starts");
        var maps = ForwardIntermediates(x, indices, norm, firstBlock, indices.Max() + 1, inputLayout, out _, out _);
        return indices.Select(i => maps[i]).ToList();
    }

    /// <summary>Runs blocks [firstBlock, endBlock) and returns the feature maps of those in <paramref name="indices"/>
    /// by block index, and the tokens leaving the last block with their layout (to run a frozen prefix of the network
    /// without autograd, then the rest with it).</summary>
    public Dictionary<int, Tensor> ForwardIntermediates(Tensor x, IReadOnlyList<int> indices, bool norm, int firstBlock, int endBlock,
                                                        TokenLayout? inputLayout, out Tensor tokens, out TokenLayout layout)
    {
        foreach (int i in indices)
            if (i < 0 || i >= Config.Depth)
                throw new PeftSharpException("indices", $"block index {i} is outside blocks 0..{Config.Depth - 1}");
        if (firstBlock == 0)
        {
            if (x.dim() != 4 || x.shape[1] != Config.InChans)
                throw new PeftSharpException($"model input: expected [B, {Config.InChans}, H, W], got [{string.Join(", ", x.shape)}]");
            layout = InputLayout(x);
            x = norm_pre.forward(tuners.Sequential(EncoderPoint.AfterEmbedding, PositionEmbed(patch_embed.forward(x), layout), layout));
        }
        else layout = inputLayout ?? throw new PeftSharpException("inputLayout", "tokens entering a later block need their layout");
        var trainable = GradCheckpointing && training && is_grad_enabled()
            ? parameters().Where(p => p.requires_grad).Cast<Tensor>().ToList() : null;
        var maps = new Dictionary<int, Tensor>();
        var l = layout;
        for (int i = firstBlock; i < endBlock; i++)
        {
            var block = blocks[i];
            x = trainable is null ? block.forward(x, l, null) : GradCheckpoint.Run((input, bl) => block.forward(input, bl, null), x, l, trainable);
            if (indices.Contains(i)) maps[i] = FeatureMap(norm ? this.norm.forward(x) : x, l);
        }
        tokens = x;
        return maps;
    }

    /// <summary>Patch tokens [B, prefix + prompts + h·w, D] as a [B, D, h, w] map.</summary>
    static Tensor FeatureMap(Tensor tokens, TokenLayout layout) =>
        tokens[.., layout.PatchStart..].reshape(tokens.shape[0], layout.GridHeight, layout.GridWidth, tokens.shape[2])
                                       .permute(0, 3, 1, 2).contiguous();

    /// <summary>Pooling, fc_norm, head dropout and head (timm's forward_head); pre_logits stops before the head.</summary>
    public Tensor ForwardHead(Tensor tokens, TokenLayout layout, bool preLogits = false)
    {
        var pooled = Config.GlobalPool == "avg"
            ? tokens[.., layout.PatchStart..].mean(new long[] { 1 })
            : tokens[.., 0];
        pooled = head_drop.forward(fc_norm.forward(pooled));
        return preLogits ? pooled : head.forward(pooled);
    }

    public Tensor ForwardHead(Tensor tokens, bool preLogits = false) =>
        ForwardHead(tokens, new TokenLayout(Config.NumPrefixTokens, Config.GridSize, Config.GridSize), preLogits);

    /// <summary>The token layout of an image batch: the configured grid, or with <see cref="VitConfig.DynamicImgSize"/>
    /// the grid of this input (the patch convolution's output size).</summary>
    TokenLayout InputLayout(Tensor images)
    {
        long h = images.shape[2], w = images.shape[3];
        if (!Config.DynamicImgSize)
        {
            if (h != Config.ImgSize || w != Config.ImgSize)
                throw new PeftSharpException($"model input: expected {Config.ImgSize}x{Config.ImgSize} images, got {h}x{w}");
            return new TokenLayout(Config.NumPrefixTokens, Config.GridSize, Config.GridSize);
        }
        if (h < Config.PatchSize || w < Config.PatchSize)
            throw new PeftSharpException($"model input: images must be at least one {Config.PatchSize}-pixel patch, got {h}x{w}");
        return new TokenLayout(Config.NumPrefixTokens, (int)(h / Config.PatchSize), (int)(w / Config.PatchSize));
    }

    /// <summary>The position table for a patch grid: the learned one on the configured grid, else resampled to the
    /// grid as timm's _pos_embed does under dynamic_img_size (from the configured grid, prefix positions kept).</summary>
    public Tensor PositionTable(int gridHeight, int gridWidth) =>
        gridHeight == Config.GridSize && gridWidth == Config.GridSize
            ? pos_embed
            : PositionEmbedding.Resample(pos_embed, (gridHeight, gridWidth), Config.NoEmbedClass ? 0 : Config.NumPrefixTokens,
                                         (Config.GridSize, Config.GridSize));

    Tensor PositionEmbed(Tensor x, TokenLayout layout)
    {
        var pos_embed = PositionTable(layout.GridHeight, layout.GridWidth);
        long b = x.shape[0];
        var prefix = new List<Tensor>();
        if (cls_token is not null) prefix.Add(cls_token.expand(b, -1, -1));
        if (reg_token is not null) prefix.Add(reg_token.expand(b, -1, -1));
        if (Config.NoEmbedClass)
        {
            x = x + pos_embed;
            if (prefix.Count > 0) x = cat(prefix.Append(x).ToArray(), 1);
        }
        else
        {
            if (prefix.Count > 0) x = cat(prefix.Append(x).ToArray(), 1);
            x = x + pos_embed;
        }
        return pos_drop.forward(x);
    }
}
