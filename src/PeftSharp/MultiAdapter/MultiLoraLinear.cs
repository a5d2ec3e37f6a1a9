using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.MultiAdapter;

/// <summary>Which examples of the batch being run go to which adapter: (adapter name, first example, count), the batch
/// ordered by adapter so each adapter's examples are one contiguous slice. Set by <see cref="MultiAdapterModel"/>
/// around one forward; read by every <see cref="MultiLoraLinear"/>.</summary>
public sealed class AdapterRouting
{
    public IReadOnlyList<(string Adapter, long Start, long Count)> Groups { get; internal set; } = [];
}

/// <summary>Modules by adapter name, registered as children as they are added (TorchSharp's ModuleDict registers only
/// what it holds when constructed, so later additions would miss state_dict, parameters() and .to(device)).</summary>
public sealed class AdapterModules<T> : nn.Module where T : nn.Module
{
    readonly List<string> names = [];
    readonly Dictionary<string, T> byName = [];

    public AdapterModules() : base("AdapterModules") { }

    public IReadOnlyList<string> Names => names;
    public bool Contains(string name) => byName.ContainsKey(name);
    public T this[string name] => byName[name];
    public bool TryGetValue(string name, out T module) => byName.TryGetValue(name, out module!);

    public void Add(string name, T module)
    {
        register_module(name, module);
        names.Add(name);
        byName[name] = module;
    }
}

/// <summary>
/// One adapter's low-rank update of one Linear, frozen for inference: s·B A with B over all output rows (zero rows
/// outside a q/k/v selection), and for DoRA the per-row rescale m / ‖W + s·B A‖ (the norm fixed at load, as in DoRA's
/// evaluation). Keys lora_A, lora_B, dora_rescale.
/// </summary>
public sealed class LoraBranch : nn.Module
{
    public Tensor lora_A;        // [r, in]
    public Tensor lora_B;        // [out, r], scaled by s
    public Tensor? dora_rescale; // [out]

    public LoraBranch(LoraLinear source) : base("LoraBranch")
    {
        using var _ = no_grad();
        var weight = source.InnermostLinear.weight!;
        var delta = source.DeltaWeight();   // s·B A over all rows, placed as the single-adapter layer places it
        lora_A = source.lora_A.weight!.detach().clone();
        lora_B = FullRows(source) * source.Scaling;
        if (source.lora_magnitude_vector is Parameter magnitude)
            dora_rescale = magnitude.detach() / LowRankUpdate.RowNorms(weight + delta);
        delta.Dispose();
        RegisterComponents();
    }

    /// <summary>B over all output rows of the layer: the q/k/v sections the adapter trained, zero rows elsewhere.</summary>
    static Tensor FullRows(LoraLinear source)
    {
        var b = source.lora_B.weight!.detach();
        if (source.RowSections is not int[] sections) return b.clone();
        long section = source.InnermostLinear.weight!.shape[0] / 3;
        var full = zeros(3 * section, b.shape[1], dtype: b.dtype, device: b.device);
        for (int i = 0; i < sections.Length; i++)
            full.narrow(0, sections[i] * section, section).copy_(b.narrow(0, i * section, section));
        return full;
    }
}

/// <summary>
/// A frozen Linear shared by several adapters (peft's mixed-batch LoRA forward): the base product runs once for the
/// whole batch, then each adapter adds its update to the rows of its own examples. A DoRA adapter's rows become
/// b + m/‖W'‖ ⊙ (W x + s·B A x). Examples of adapters that do not target this layer get the base output.
/// </summary>
public sealed class MultiLoraLinear : ModuleWrapper
{
    public AdapterModules<LoraBranch> lora;
    readonly AdapterRouting routing;

    public MultiLoraLinear(Linear baseLayer, AdapterRouting routing) : base("MultiLoraLinear", baseLayer)
    {
        this.routing = routing;
        lora = new AdapterModules<LoraBranch>();
        RegisterComponents();
    }

    public void Add(string adapter, LoraBranch branch) => lora.Add(adapter, branch);

    public override Tensor forward(Tensor x)
    {
        var linear = InnermostLinear;
        var y = base_layer.forward(x).contiguous();
        long outFeatures = y.shape[^1];
        foreach (var (adapter, start, count) in routing.Groups)
        {
            if (!lora.TryGetValue(adapter, out var branch)) continue;
            // This adapter's examples are a slice of dim 0 (the batch in every ViT Linear): its rows and outputs are
            // views, and the update accumulates into the base output in place.
            var rows = x.narrow(0, start, count).reshape(-1, x.shape[^1]);
            var own = y.narrow(0, start, count).view(-1, outFeatures);
            var lowRank = rows.mm(branch.lora_A.t());
            if (branch.dora_rescale is Tensor rescale)
            {
                // b + m/‖W'‖ ⊙ (W x + s·B A x), from the base output W x + b.
                if (linear.bias is Tensor b) own.sub_(b);
                own.addmm_(lowRank, branch.lora_B.t()).mul_(rescale);
                if (linear.bias is Tensor bias) own.add_(bias);
            }
            else own.addmm_(lowRank, branch.lora_B.t());
        }
        return y;
    }
}
