using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using static PeftSharp.Tuners.TargetMatcher;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// BAPAT as V-PETL implements it (synbol/Parameter-Efficient-Transfer-Learning-Benchmark,
/// VideoActionRecognition/models/video_swin_transformer_patt.py, att_prefix_mode "patt_kv"): inside every attention, an
/// adapter Linear(D→m) → tanh → Linear(m→2D) of the attention's input, split per head, is added to the keys and values
/// with scale s (no extra tokens). Added to the fused qkv output as [0 | s·k′ | s·v′], which is the same thing in
/// timm's q|k|v, head-major layout. V-PETL's defaults: m = 64 (att_mid_dim), s = 0.2 (att_prefix_scale), biases as
/// the model's qkv_bias, PyTorch's default Linear init (so it is active from the start). V-PETL's published runs add
/// an AdaptFormer MLP adapter (bottleneck 64, scale 0.1): here that is the composition bapat+adaptformer.
/// Applies to image ViTs unchanged (nothing in it is temporal); V-PETL evaluates it on video.
/// Parameters per block Dm + m + 2Dm + 2D (with biases).
/// </summary>
public sealed class Bapat : TunerMethod
{
    public override string Id => "bapat";
    public override string Summary => "tanh-bottleneck adapter of the attention input added to its keys and values (V-PETL's patt_kv)";
    public override string Reference => "V-PETL (synbol/Parameter-Efficient-Transfer-Learning-Benchmark) video_swin_transformer_patt.py, patt_kv";
    public override bool Mergeable => false;

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("mid_dim", 64, new[] { 32, 64, 128 }, "adapter width m (V-PETL's att_mid_dim)"),
        HyperSpec.Double("scale", 0.2, new[] { 0.2, 0.5, 0.8 }, "scale s of the key/value offsets (att_prefix_scale)", min: 0),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var wrappers = new List<KeyValueOffset>();
        foreach (var (path, module) in Find<Linear>(encoder.Root, new[] { "attn.qkv" }, Id))
        {
            var linear = (Linear)ModuleWrapper.Unwrap(module);
            var wrapper = new KeyValueOffset(module, encoder.EmbedDim, h.Int("mid_dim"), h.Double("scale"), linear.bias is not null);
            Wrap(encoder.Root, path, wrapper);
            wrappers.Add(wrapper);
        }
        return new WrapperTuner<KeyValueOffset>(this, h, encoder, wrappers, w => w.AdapterParameters(), _ => { }, _ => Array.Empty<Tensor>());
    }
}

/// <summary>qkv(x) + [0 | s·(k′, v′)] with (k′, v′) = up(tanh(down(x))); keys "down" and "up" (V-PETL's qkv_adapter.0/.2).</summary>
public sealed class KeyValueOffset : ModuleWrapper
{
    public Linear down;
    public Linear up;
    readonly double scale;
    readonly int dim;

    public KeyValueOffset(Module<Tensor, Tensor> baseLayer, int dim, int midDim, double scale, bool bias) : base("KeyValueOffset", baseLayer)
    {
        this.dim = dim;
        this.scale = scale;
        down = Linear(dim, midDim, hasBias: bias);
        up = Linear(midDim, 2 * dim, hasBias: bias);
        RegisterComponents();
    }

    public IEnumerable<Parameter> AdapterParameters() => down.parameters().Concat(up.parameters());

    public override Tensor forward(Tensor x)
    {
        var qkv = base_layer.forward(x);
        if (Merged) return qkv;
        var offset = up.forward(down.forward(x).tanh()) * scale;
        return qkv + F.pad(offset, new long[] { dim, 0 });
    }
}
