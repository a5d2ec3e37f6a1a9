using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// Prefix tuning (Li &amp; Liang 2021) for vision transformers as V-PETL Bench runs it: p learnable key and value
/// vectors prepended to every attention layer's keys and values (no MLP re-parameterisation). Queries and the
/// sequence length are unchanged. Parameters 2·L·p·D.
/// </summary>
public sealed class PrefixTuning : TunerMethod
{
    public override CapacityKnob? Capacity => new("prompts", ["5", "10"]);
    public override string Id => "prefix";
    public override string Summary => "learnable key/value prefixes in every attention layer";
    public override string Reference => "Li & Liang 2021; V-PETL Bench's prefix variant without re-parameterisation";
    public override bool Mergeable => false;
    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("prompts", 10, new[] { 5, 10, 50 }, "prefix length p", min: 1),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var attached = new List<(Attention Attn, KeyValuePrefix Prefix)>();
        foreach (var block in encoder.Blocks)
        {
            var prefix = new KeyValuePrefix(h.Int("prompts"), encoder.EmbedDim, block.attn.NumHeads);
            block.attn.AttachKeyValueTuner("prefix", prefix);
            attached.Add((block.attn, prefix));
        }
        return new HookTuner(this, h, encoder, attached.SelectMany(a => a.Prefix.parameters()),
                             () => attached.ForEach(a => a.Attn.KeyValueTuners.Remove(a.Attn, "prefix")));
    }
}

public sealed class KeyValuePrefix : KeyValueTuner
{
    public Parameter keys;
    public Parameter values;
    readonly int heads;

    public KeyValuePrefix(int count, int dim, int heads) : base("KeyValuePrefix")
    {
        this.heads = heads;
        double bound = Math.Sqrt(6.0 / (count + dim));
        keys = new Parameter(empty(count, dim).uniform_(-bound, bound));
        values = new Parameter(empty(count, dim).uniform_(-bound, bound));
        RegisterComponents();
    }

    public override (Tensor Keys, Tensor Values) Extend(Tensor k, Tensor v)
    {
        long b = k.shape[0], p = keys.shape[0], hd = k.shape[3];
        Tensor Heads(Tensor t) => t.reshape(p, heads, hd).permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1);
        return (cat(new[] { Heads(keys), k }, 2), cat(new[] { Heads(values), v }, 2));
    }
}
