using System.Globalization;
using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Tuners;

/// <summary>What to tune besides the methods' own parameters.</summary>
public sealed record PeftOptions
{
    /// <summary>Train the classification head (default; the study trains a fresh head with every method).</summary>
    public bool TrainHead { get; init; } = true;
    /// <summary>For CLIP: which towers the methods apply to ("visual", "text" or both).</summary>
    public IReadOnlyList<string> Towers { get; init; } = new[] { "visual" };
}

/// <summary>
/// A model with one or more PEFT methods applied (Hugging Face peft's PeftModel): everything frozen but the methods'
/// parameters (and the head unless told otherwise); summary of trainable parameters; merge, unmerge and
/// merge-and-unload; the adapter-only state that <see cref="AdapterFiles"/> saves.
/// </summary>
public sealed class PeftModel
{
    readonly List<AppliedTuner> tuners = new();
    readonly Dictionary<Tensor, Tensor> mergeSnapshots = new(ReferenceEqualityComparer.Instance);

    PeftModel(nn.Module root, IReadOnlyList<TunableEncoder> encoders, string methodSpec, PeftOptions options)
    {
        Root = root;
        Encoders = encoders;
        MethodSpec = methodSpec;
        Options = options;
    }

    public nn.Module Root { get; }
    public IReadOnlyList<TunableEncoder> Encoders { get; }
    public string MethodSpec { get; }
    public PeftOptions Options { get; }
    public IReadOnlyList<AppliedTuner> Tuners => tuners;
    public bool IsMerged => tuners.Any(t => t.Merged);
    public bool Mergeable => tuners.All(t => t.Method.Mergeable);

    /// <summary>The ViT this wraps (for a CLIP model, its image tower).</summary>
    public VisionTransformer Vit => Root as VisionTransformer ?? (Root as ClipModel)?.visual
        ?? throw new InvalidOperationException("not a vision model");

    /// <summary>Applies the methods of <paramref name="methodSpec"/> ("lora", "ssf+lora") to a ViT.</summary>
    /// <summary>Applies a typed method configuration (<see cref="MethodConfig"/>) to an image ViT.</summary>
    public static PeftModel Create(VisionTransformer model, MethodConfig config, PeftOptions? options = null) =>
        Create(model, config.Method, config.Settings(), options);

    /// <summary>Applies a typed method configuration to a video ViT.</summary>
    public static PeftModel Create(VideoVisionTransformer model, MethodConfig config, PeftOptions? options = null) =>
        Create(model, config.Method, config.Settings(), options);

    /// <summary>Applies a typed method configuration to CLIP's towers (<see cref="PeftOptions.Towers"/>).</summary>
    public static PeftModel Create(ClipModel model, MethodConfig config, PeftOptions? options = null) =>
        Create(model, config.Method, config.Settings(), options);

    public static PeftModel Create(VisionTransformer model, string methodSpec, IReadOnlyDictionary<string, string>? settings = null,
                                   PeftOptions? options = null) =>
        Build(model, new[] { TunableEncoder.Of(model) }, methodSpec, settings, options ?? new PeftOptions());

    /// <summary>Applies the methods to a video ViT (its blocks are the image ViT's, so block methods apply unchanged).</summary>
    public static PeftModel Create(VideoVisionTransformer model, string methodSpec, IReadOnlyDictionary<string, string>? settings = null,
                                   PeftOptions? options = null) =>
        Build(model, new[] { TunableEncoder.Of(model) }, methodSpec, settings, options ?? new PeftOptions());

    /// <summary>Applies the methods to the chosen CLIP towers (the image tower by default).</summary>
    public static PeftModel Create(ClipModel model, string methodSpec, IReadOnlyDictionary<string, string>? settings = null,
                                   PeftOptions? options = null)
    {
        options ??= new PeftOptions { TrainHead = false };
        var encoders = options.Towers.Select(t => t switch
        {
            "visual" => TunableEncoder.Of(model.visual, "visual"),
            "text" => TunableEncoder.Of(model.text, "text"),
            _ => throw new PeftSharpException($"CLIP tower '{t}': expected 'visual' or 'text'"),
        }).ToList();
        return Build(model, encoders, methodSpec, settings, options);
    }

    static PeftModel Build(nn.Module root, IReadOnlyList<TunableEncoder> encoders, string methodSpec,
                           IReadOnlyDictionary<string, string>? settings, PeftOptions options)
    {
        var methods = TunerRegistry.Parse(methodSpec);
        var perMethod = TunerRegistry.RouteSettings(methods, settings ?? new Dictionary<string, string>());
        var model = new PeftModel(root, encoders, string.Join("+", methods.Select(m => m.Id)), options);
        foreach (var method in methods)
        {
            var hypers = Hyperparameters.Create(method.Id, method.Hypers, perMethod[method]);
            foreach (var encoder in encoders) model.tuners.Add(method.Apply(encoder, hypers));
        }
        // Tuner layers are created on the CPU; follow the base model to its device.
        var device = root.parameters().First().device;
        if (device.type != DeviceType.CPU) root.to(device);
        model.ResetTrainable();
        return model;
    }

    /// <summary>Freezes everything, then unfreezes the methods' parameters and (optionally) the head.</summary>
    public void ResetTrainable()
    {
        foreach (var p in Root.parameters()) p.requires_grad = false;
        foreach (var p in tuners.SelectMany(t => t.TrainableParameters())) p.requires_grad = true;
        if (Options.TrainHead)
            foreach (var (_, p) in HeadParameters()) p.requires_grad = true;
    }

    /// <summary>The classification head's parameters (for CLIP: the image projection).</summary>
    public IEnumerable<(string Name, Parameter Parameter)> HeadParameters() =>
        Root.named_parameters().Where(p => IsHeadName(p.name));

    public bool IsHeadName(string name) => Root is ClipModel
        ? name.StartsWith("visual.head.", StringComparison.Ordinal)
        : TunableEncoder.IsHead(name);

    /// <summary>Trainable parameters with their names, in registration order (what the optimizer gets).</summary>
    public List<(string Name, Parameter Parameter)> TrainableParameters() =>
        Root.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToList();

    public long CountTrainable(bool includeHead = false) =>
        TrainableParameters().Where(p => includeHead || !IsHeadName(p.Name)).Sum(p => p.Parameter.numel());

    public long CountTotal() => Root.parameters().Sum(p => p.numel());

    /// <summary>What trains: the method's parameters, the head's, and all of the model's (peft's
    /// print_trainable_parameters; its ToString is that line).</summary>
    public TrainableParameterCount TrainableParameterSummary()
    {
        long trainable = CountTrainable(includeHead: true), method = CountTrainable();
        return new TrainableParameterCount(trainable, method, trainable - method, CountTotal());
    }

    /// <summary>peft's print_trainable_parameters line (head included, as it trains).</summary>
    public string Summary() => TrainableParameterSummary().ToString();

    /// <summary>The applied methods that choose part of themselves from the training data (<see cref="IPrePass"/>).</summary>
    public IEnumerable<IPrePass> PrePasses => tuners.OfType<IPrePass>();

    /// <summary>True while some method's pre-pass has neither run nor been loaded.</summary>
    public bool NeedsPrePass => PrePasses.Any(p => !p.Selected);

    /// <summary>Runs every pending pre-pass on the training split; returns the seconds it took. A pass may rebuild its
    /// method's trained modules (SPT, NOAH), so trainability is set again afterwards.</summary>
    public double RunPrePasses(PrePassData data)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        foreach (var pass in PrePasses.Where(p => !p.Selected)) pass.RunPrePass(data);
        ResetTrainable();
        return watch.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Gives every pre-pass method its saved selection, read by canonical state-dict name from <paramref name="read"/>
    /// (null when the source lacks the name; <paramref name="where"/> names the source in errors), before any trained
    /// tensor is read: some methods' trained tensors take their shapes from the selection. False, changing nothing,
    /// when the source holds none of the selection; a source holding part of it is an error.
    /// </summary>
    public bool RestoreSelection(Func<string, Tensor?> read, string where)
    {
        var passes = PrePasses.ToList();
        if (passes.Count == 0) return false;
        var names = Root.named_buffers().GroupBy(b => b.buffer, ReferenceEqualityComparer.Instance)
                        .ToDictionary(g => g.Key, g => AdapterFiles.CanonicalName(g.First().name), ReferenceEqualityComparer.Instance);
        var saved = passes.Select(p => p.SelectionTensors().Select(b => (Buffer: b, Name: names[b], Saved: read(names[b]))).ToList()).ToList();
        var all = saved.SelectMany(s => s).ToList();
        if (all.All(s => s.Saved is null)) return false;
        if (all.FirstOrDefault(s => s.Saved is null) is { Name: not null } missing)
            throw new PeftSharpException($"{where}: no selection tensor '{missing.Name}' (the file holds part of {MethodSpec}'s selection)");
        try
        {
            for (int i = 0; i < passes.Count; i++)
            {
                passes[i].LoadSelection(saved[i].Select(s => (s.Buffer, s.Saved!, s.Name)).ToList(), where);
                passes[i].MarkSelected();
            }
        }
        finally
        {
            foreach (var s in all) s.Saved?.Dispose();
        }
        ResetTrainable();
        return true;
    }

    /// <summary>The methods' selection buffers under their canonical state-dict names (saved beside the trained tensors).</summary>
    public List<(string Name, Tensor Tensor)> SelectionState()
    {
        var wanted = PrePasses.SelectMany(p => p.SelectionTensors()).ToHashSet(ReferenceEqualityComparer.Instance);
        if (wanted.Count == 0) return new List<(string, Tensor)>();
        return Root.named_buffers().Where(b => wanted.Contains(b.buffer))
                   .Select(b => (AdapterFiles.CanonicalName(b.name), b.buffer)).ToList();
    }

    /// <summary>After the selection buffers were loaded: no pre-pass is due.</summary>
    public void MarkSelected()
    {
        foreach (var pass in PrePasses) pass.MarkSelected();
    }

    /// <summary>Folds every method into the base weights (exact unmerge keeps a copy of what merging overwrites).</summary>
    public void Merge()
    {
        var notMergeable = tuners.Where(t => !t.Method.Mergeable).Select(t => t.Method.Id).Distinct().ToList();
        if (notMergeable.Count > 0)
            throw new PeftSharpException($"cannot merge: {string.Join(", ", notMergeable)} {(notMergeable.Count == 1 ? "is" : "are")} not linear on the frozen path (mergeable: {string.Join(", ", TunerRegistry.All.Where(m => m.Mergeable).Select(m => m.Id))})");
        using var _ = no_grad();
        foreach (var target in tuners.SelectMany(t => t.MergeTargets()))
            if (!mergeSnapshots.ContainsKey(target)) mergeSnapshots[target] = target.detach().clone();
        foreach (var t in tuners.OrderBy(t => t.MergePhase)) t.Merge();
    }

    /// <summary>Restores the base weights bit-exactly and reactivates the methods.</summary>
    public void Unmerge()
    {
        using var _ = no_grad();
        foreach (var (target, copy) in mergeSnapshots)
        {
            target.copy_(copy);
            copy.Dispose();
        }
        mergeSnapshots.Clear();
        for (int i = tuners.Count - 1; i >= 0; i--) tuners[i].MarkUnmerged();
    }

    /// <summary>
    /// Merges, then removes every tuner structure: the root is left with exactly timm's modules and state-dict keys
    /// (zero inference overhead; saves as an ordinary checkpoint). This PeftModel is unusable afterwards.
    /// </summary>
    /// <summary><see cref="MergeAndUnload()"/> as the model type the method was applied to.</summary>
    public TModel MergeAndUnload<TModel>() where TModel : nn.Module =>
        Root is TModel ? (TModel)MergeAndUnload()
                       : throw new PeftSharpException("model type", $"this PeftModel wraps a {Root.GetType().Name}, not a {typeof(TModel).Name}");

    public nn.Module MergeAndUnload()
    {
        Merge();
        foreach (var t in tuners) t.Detach();
        // Outermost wrappers first: each is replaced by the plain module under all of its wrappers.
        foreach (var (path, module) in Root.named_modules().ToList())
            if (module is ModuleWrapper wrapper && !path.Contains(".base_layer", StringComparison.Ordinal) && ModuleSurgery.Find(Root, path) == wrapper)
                ModuleSurgery.ReplaceAt(Root, path, wrapper.Innermost);
        foreach (var copy in mergeSnapshots.Values) copy.Dispose();
        mergeSnapshots.Clear();
        tuners.Clear();
        foreach (var p in Root.parameters()) p.requires_grad = false;
        return Root;
    }
}
