using PeftSharp.Interop;
using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// SSF (Lian et al. 2022): a learnable per-channel scale and shift after the patch embedding, norm1, qkv, attn.proj,
/// norm2, fc1, fc2 and the final norm; scale ~ N(1, 0.02), shift ~ N(0, 0.02). Mergeable into the wrapped layer.
/// </summary>
public sealed class Ssf : TunerMethod
{
    public override string Id => "ssf";
    public override string Summary => "per-channel scale and shift after patch-embed, norms, qkv, proj, fc1, fc2";
    public override bool Mergeable => true;
    public override string Reference => "Lian et al., NeurIPS 2022; placement as in the unifying study's block.py";

    static readonly string[] Targets = { "patch_embed.proj", "norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2", "norm", "fc_norm", "ln_final" };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var wrappers = new List<ScaleShift>();
        foreach (var (path, module) in TargetMatcher.Find<nn.Module>(encoder.Root, Targets, Id))
        {
            var inner = ModuleWrapper.Unwrap(module);
            if (inner is not (Linear or LayerNorm or Conv2d)) continue;   // e.g. an Identity final norm
            var wrapper = new ScaleShift(module, Channels(inner), inner is Conv2d ? 1 : -1);
            TargetMatcher.Wrap(encoder.Root, path, wrapper);
            wrappers.Add(wrapper);
        }
        return new WrapperTuner<ScaleShift>(this, h, encoder, wrappers, w => new[] { w.ssf_scale, w.ssf_shift },
                                            w => w.Fold(), w => w.FoldTargets());
    }

    static int Channels(nn.Module m) => m switch
    {
        Linear l => (int)l.weight!.shape[0],
        LayerNorm n => (int)n.weight!.shape[0],
        Conv2d c => (int)c.weight!.shape[0],
        _ => throw new InvalidOperationException(),
    };
}

/// <summary>y = base(x) · scale + shift over the channel dimension (last, or 1 for a conv's NCHW output).</summary>
public sealed class ScaleShift : ModuleWrapper
{
    public Parameter ssf_scale;
    public Parameter ssf_shift;
    readonly int channelDim;

    public ScaleShift(nn.Module<Tensor, Tensor> baseLayer, int channels, int channelDim) : base("ScaleShift", baseLayer)
    {
        this.channelDim = channelDim;
        ssf_scale = new Parameter(normal(1.0, 0.02, new long[] { channels }));
        ssf_shift = new Parameter(normal(0.0, 0.02, new long[] { channels }));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.forward(x);
        // A LayerNorm takes the scale and shift into its own affine (w·s, b·s + t): the same values, without a pass
        // over the activations forward and two backward.
        if (base_layer is LayerNorm { weight: not null, bias: not null } norm)
            return nn.functional.layer_norm(x, norm.normalized_shape, norm.weight * ssf_scale, ssf_shift.addcmul(norm.bias, ssf_scale, 1), norm.eps);
        if (base_layer is Linear linear && ScaledLinear.Applies(linear, x, ssf_scale))
            return OnRows(x, rows => ScaledLinear.Apply(rows, linear, ssf_scale, ssf_shift));
        var y = base_layer.forward(x);
        // One fused op, one pass over the activations: y * scale + shift would write and read a second
        // activation-sized temporary.
        if (channelDim == 1 && y.dim() == 4) return ssf_shift.view(1, -1, 1, 1).addcmul(y, ssf_scale.view(1, -1, 1, 1), 1);
        return ssf_shift.addcmul(y, ssf_scale, 1);
    }

    internal IEnumerable<Tensor> FoldTargets()
    {
        var (weight, bias) = WeightAndBias();
        yield return weight;
        if (bias is not null) yield return bias;
    }

    /// <summary>W ← diag(scale)·W, b ← scale·b + shift, on the innermost layer.</summary>
    internal void Fold()
    {
        var (weight, bias) = WeightAndBias();
        if (bias is null)
            throw new PeftSharpException($"cannot merge SSF into a layer without bias ({Innermost.GetName()}): the shift has nowhere to go");
        var shape = new long[weight.dim()];
        Array.Fill(shape, 1L);
        shape[0] = -1;
        weight.mul_(ssf_scale.view(shape));
        bias.mul_(ssf_scale).add_(ssf_shift);
    }

    (Tensor Weight, Tensor? Bias) WeightAndBias() => Innermost switch
    {
        Linear l => (l.weight!, l.bias),
        LayerNorm n => (n.weight!, n.bias),
        Conv2d c => (c.weight!, c.bias),
        _ => throw new InvalidOperationException("SSF wraps Linear, LayerNorm and Conv2d layers only"),
    };
}

/// <summary>
/// SSF on a frozen Linear as one autograd node: z = (x Wᵀ + b) · s + t computed as x (diag(s) W)ᵀ + (s·b + t). Through
/// autograd the scale's gradient Σ g ⊙ (x Wᵀ + b) kept the unscaled output, while the next layer keeps z as well
/// (attention keeps q, k, v; GELU its input), so qkv and fc1 held their output twice. The node keeps z alone and
/// recovers the unscaled output as (z − t)/s; ∂x = g · diag(s) W is one product.
/// </summary>
public static class ScaledLinear
{
    /// <summary>Below this magnitude a scale would lose too many digits in (z − t)/s; the layer then goes through
    /// autograd, which keeps the unscaled output (SSF's scales start at 1 ± 0.02).</summary>
    const double SmallestScale = 0.01;

    /// <summary>Whether the node stands in for SSF on <paramref name="linear"/>: a frozen float32 CPU Linear, a scale
    /// being trained, and no scale smaller than <see cref="SmallestScale"/> in magnitude.</summary>
    public static bool Applies(Linear linear, Tensor x, Tensor scale) =>
        is_grad_enabled() && scale.requires_grad && LowRankUpdate.Fusable(linear, x)
        && scale.abs().min().item<float>() >= SmallestScale;

    /// <summary>(rows Wᵀ + b) · <paramref name="scale"/> + <paramref name="shift"/> on 2-D rows.</summary>
    public static Tensor Apply(Tensor rows, Linear linear, Tensor scale, Tensor shift) =>
        CustomAutograd.Released(Node.apply(new Frozen(linear.weight!, linear.bias), rows, scale, shift));

    sealed record Frozen(Tensor Weight, Tensor? Bias);

    sealed class Node : SingleTensorFunction<Node>
    {
        public override string Name => "ScaleShiftLinear";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var (frozen, rows, scale, shift) = ((Frozen)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
            CustomAutograd.OnForward(ctx);
            var scaled = frozen.Weight * scale.unsqueeze(1);
            var z = LowRankUpdate.Affine(rows, scaled, frozen.Bias is Tensor b ? shift.addcmul(b, scale, 1) : shift);
            // Not the rows: ∂x needs only the weight, and keeping them would hold the input (fc2's is 4× wide) alive.
            ctx.save_for_backward(new List<Tensor> { scale, shift, scaled, z });
            ctx.save_data("rowsNeedGrad", rows.requires_grad);
            return z;
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (scale, shift, scaled, z) = (saved[0], saved[1], saved[2], saved[3]);
            var gradRows = (bool)ctx.get_data("rowsNeedGrad") ? grad.mm(scaled) : null;
            var gradShift = grad.sum(0L);
            // Σ g ⊙ (z − t)/s = (Σ g ⊙ z − t ⊙ Σ g) / s
            var gradScale = (grad * z).sum(0L).sub_(shift * gradShift).div_(scale);
            return CustomAutograd.HandOver(grad, null, gradRows, scale.requires_grad ? gradScale : null,
                                           shift.requires_grad ? gradShift : null);
        }
    }
}
