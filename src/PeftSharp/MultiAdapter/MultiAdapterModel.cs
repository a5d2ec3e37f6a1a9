using PeftSharp.Models;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.MultiAdapter;

/// <summary>One adapter's part of a mixed batch: the indices of its examples in the batch and their logits [k, classes].</summary>
public sealed record AdapterLogits(string Adapter, long[] Examples, Tensor Logits);

/// <summary>
/// Several LoRA-family adapters (LoRA, DoRA) for different tasks on one frozen ViT, each with its own head (Hugging
/// Face peft's multi-adapter model with adapter_names, the multi-task tuning of the PEFT surveys). Each example of a
/// batch names its adapter; the frozen layers run once for the whole batch, each adapter's update and head only on its
/// own examples, so an example's logits are those of its adapter run alone. Inference only.
/// </summary>
public sealed class MultiAdapterModel : nn.Module
{
    public VisionTransformer backbone;
    public AdapterModules<nn.Module<Tensor, Tensor>> heads;
    readonly AdapterRouting routing = new();
    readonly VitConfig config;

    /// <summary>Takes <paramref name="plainBackbone"/> (a plain ViT: no tuner applied) as the shared frozen backbone; its
    /// own head is dropped, each adapter brings one.</summary>
    public MultiAdapterModel(VisionTransformer plainBackbone) : base("MultiAdapterModel")
    {
        var wrapped = plainBackbone.named_modules().FirstOrDefault(m => m.module is ModuleWrapper);
        if (wrapped.module is not null)
            throw new PeftSharpException($"multi-adapter backbone: expected a plain ViT, but '{wrapped.name}' carries a tuner; merge it or load the base checkpoint");
        config = plainBackbone.Config;
        plainBackbone.ResetClassifier(0);
        backbone = plainBackbone;
        heads = new AdapterModules<nn.Module<Tensor, Tensor>>();
        RegisterComponents();
        backbone.eval();
        foreach (var p in parameters()) p.requires_grad = false;
    }

    public IReadOnlyList<string> AdapterNames => heads.Names;

    /// <summary>The width of <paramref name="adapter"/>'s head (its classes; the embedding width for a head-less adapter).</summary>
    public int NumClasses(string adapter) => heads[adapter] is Linear l ? (int)l.weight!.shape[0] : config.EmbedDim;

    /// <summary>
    /// Adds a trained LoRA or DoRA model under <paramref name="name"/>: its low-rank updates go onto the backbone's
    /// layers and its head is copied. <paramref name="adapter"/> must wrap another instance of this backbone's base (same
    /// architecture, same frozen weights); it is left as it was and can be disposed afterwards.
    /// </summary>
    public void AddAdapter(string name, PeftModel adapter)
    {
        string where = $"adapter '{name}'";
        if (string.IsNullOrWhiteSpace(name) || name.Contains('.'))
            throw new PeftSharpException($"{where}: expected a non-empty name without '.'");
        if (heads.Contains(name)) throw new PeftSharpException($"{where}: an adapter of this name is already loaded");
        if (adapter.Root is not VisionTransformer vit)
            throw new PeftSharpException($"{where}: an adapter for a {adapter.Root.GetType().Name}; a multi-adapter model holds ViT adapters");
        var other = adapter.Tuners.Select(t => t.Method).FirstOrDefault(m => m is not (Lora or Dora));
        if (other != null)
            throw new PeftSharpException($"{where}: method '{adapter.MethodSpec}' cannot share a backbone with other adapters: only lora and dora adapters can (their update is a separate branch of a frozen Linear)");
        if (adapter.IsMerged) throw new PeftSharpException($"{where}: the adapter is merged into its weights; add it unmerged");
        if ((vit.Config with { NumClasses = 0 }).ToJson() != (config with { NumClasses = 0 }).ToJson())
            throw new PeftSharpException($"{where}: trained on another architecture ({(vit.Config with { NumClasses = 0 }).ToJson()}) than the backbone ({(config with { NumClasses = 0 }).ToJson()})");
        RequireSameFrozenWeights(vit, where);

        var branches = new List<(string Path, LoraLinear Layer)>();
        foreach (var (path, module) in vit.named_modules())
            if (module is LoraLinear layer) branches.Add((AdapterFiles.CanonicalName(path), layer));
        foreach (var (path, layer) in branches)
        {
            if (path == "head" || path.StartsWith("head.", StringComparison.Ordinal))
                throw new PeftSharpException($"{where}: targets the classification head ('{path}'); a head is the adapter's own and is not shared");
            if (layer.base_layer is not Linear)
                throw new PeftSharpException($"{where}: '{path}' is wrapped by another method under LoRA");
        }
        // Checked above before anything changes: the backbone is never left with part of an adapter.
        foreach (var (path, layer) in branches)
        {
            var target = ModuleSurgery.Find(backbone, path);
            var shared = target switch
            {
                MultiLoraLinear m => m,
                Linear linear => Wrap(path, linear),
                _ => throw new PeftSharpException($"{where}: targets '{path}', which is not a Linear layer of the backbone"),
            };
            shared.Add(name, new LoraBranch(layer));
        }
        heads.Add(name, CopyHead(vit.head));
        foreach (var p in parameters()) p.requires_grad = false;
    }

    MultiLoraLinear Wrap(string path, Linear linear)
    {
        var wrapper = new MultiLoraLinear(linear, routing);
        ModuleSurgery.ReplaceAt(backbone, path, wrapper);
        return wrapper;
    }

    /// <summary>The adapter's frozen weights must be the backbone's, tensor for tensor: an update learned on one base
    /// means nothing on another.</summary>
    void RequireSameFrozenWeights(VisionTransformer vit, string where)
    {
        using var scope = NewDisposeScope();
        var ours = backbone.named_parameters().ToDictionary(p => AdapterFiles.CanonicalName(p.name), p => p.parameter);
        foreach (var (name, p) in vit.named_parameters())
        {
            string key = AdapterFiles.CanonicalName(name);
            if (key.StartsWith("head.", StringComparison.Ordinal) || key.Contains("lora_", StringComparison.Ordinal)) continue;
            if (!ours.TryGetValue(key, out var mine))
                throw new PeftSharpException($"{where}: has a tensor '{key}' the backbone does not have");
            if (!mine.shape.SequenceEqual(p.shape) || !mine.eq(p.to(mine.device)).all().item<bool>())
                throw new PeftSharpException($"{where}: its base weights differ from the backbone's (first at '{key}'): it was trained on another checkpoint");
        }
    }

    static nn.Module<Tensor, Tensor> CopyHead(nn.Module<Tensor, Tensor> head)
    {
        if (head is not Linear linear) return nn.Identity();
        var copy = nn.Linear(linear.weight!.shape[1], linear.weight.shape[0], hasBias: linear.bias is not null);
        using (no_grad())
        {
            copy.weight!.copy_(linear.weight);
            if (linear.bias is Tensor b) copy.bias!.copy_(b);
        }
        return copy.to(linear.weight.device);
    }

    /// <summary>
    /// Logits of a mixed batch: example i goes through adapter <paramref name="adapterNames"/>[i] and its head. The
    /// result holds one entry per adapter named, in order of first appearance. Run it under no_grad or inference_mode.
    /// </summary>
    public IReadOnlyList<AdapterLogits> Forward(Tensor images, IReadOnlyList<string> adapterNames)
    {
        if (images.dim() < 1 || adapterNames.Count != images.shape[0])
            throw new PeftSharpException($"adapter names: expected one per example: {adapterNames.Count} names for a batch of {(images.dim() < 1 ? 0 : images.shape[0])}");
        var groups = new Dictionary<string, List<long>>();
        for (int i = 0; i < adapterNames.Count; i++)
        {
            if (!heads.Contains(adapterNames[i]))
                throw new PeftSharpException($"adapter names: example {i} names '{adapterNames[i]}', which is not loaded (loaded: {string.Join(", ", AdapterNames)})");
            if (!groups.TryGetValue(adapterNames[i], out var list)) groups[adapterNames[i]] = list = [];
            list.Add(i);
        }
        // The batch ordered by adapter (one gather of the images), so that every layer reads each adapter's examples
        // as a contiguous slice rather than gathering and scattering rows at every layer.
        var device = backbone.pos_embed.device;
        var order = groups.Values.SelectMany(g => g).ToArray();
        bool sorted = order.Select((e, i) => e == i).All(x => x);
        using var orderTensor = sorted ? null : tensor(order, device: device);
        var input = images.to(device);
        if (orderTensor is not null) input = input.index_select(0, orderTensor);
        long start = 0;
        routing.Groups = groups.Select(g => { var r = (g.Key, start, (long)g.Value.Count); start += g.Value.Count; return r; }).ToList();
        try
        {
            using var tokens = backbone.ForwardFeatures(input, out var layout, 0, config.Depth, pooledOnly: true);
            using var pooled = backbone.ForwardHead(tokens, layout, preLogits: true);
            return routing.Groups.Select(g =>
            {
                var own = pooled.narrow(0, g.Start, g.Count);   // not disposed: an Identity head returns it
                return new AdapterLogits(g.Adapter, groups[g.Adapter].ToArray(), heads[g.Adapter].forward(own));
            }).ToList();
        }
        finally
        {
            routing.Groups = [];
            if (orderTensor is not null) input.Dispose();   // the reordered copy is ours; the caller's images stay theirs
        }
    }

    /// <summary>Logits of every example through one adapter.</summary>
    public Tensor Forward(Tensor images, string adapter) =>
        Forward(images, Enumerable.Repeat(adapter, (int)images.shape[0]).ToList()).Single().Logits;
}
