using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

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
