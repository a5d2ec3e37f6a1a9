using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Tuners;

/// <summary>
/// A PEFT method: its id, hyperparameters and how it attaches to an encoder. One subclass per method, in
/// Tuners/Methods/, each holding its own layers. Methods never edit the model's code: they wrap named modules
/// (Linear layers, LayerNorms) or attach modules at the block's insertion points.
/// </summary>
public abstract class TunerMethod
{
    public abstract string Id { get; }
    public abstract string Summary { get; }
    public virtual IReadOnlyList<HyperSpec> Hypers => Array.Empty<HyperSpec>();
    /// <summary>Whether the method is linear on the frozen path, so it folds into the base weights.</summary>
    public abstract bool Mergeable { get; }
    /// <summary>The reference (paper/code) this implementation follows, shown by `peftsharp methods`.</summary>
    public virtual string Reference => "";
    /// <summary>The method's published VTAB-1K figure where it is not one of the unifying study's rows (those come
    /// from <see cref="PeftSharp.Evaluation.PublishedResults"/>), shown by `peftsharp methods --json`.</summary>
    public virtual PublishedFigure? Published => null;
    /// <summary>True for methods that model time and apply to the video ViT only (ST-Adapter).</summary>
    public virtual bool VideoOnly => false;

    /// <summary>False for the baselines the PEFT methods are measured against (linear probe, full fine-tuning).</summary>
    public virtual bool IsPeft => true;

    /// <summary>The hyperparameter that sets the method's size, the two values the benchmark's short profiles search
    /// and the values the capacity study grows it through (null: no size knob).</summary>
    public virtual CapacityKnob? Capacity => null;

    /// <summary>Other hyperparameters the benchmark's short profiles search beside the capacity knob (Hydra's scale).</summary>
    public virtual IReadOnlyDictionary<string, string[]> OtherBenchKnobs => new Dictionary<string, string[]>();

    /// <summary>The benchmark's grid for the method: its capacity knob's two values and any other knob's.</summary>
    public IReadOnlyDictionary<string, string[]> BenchGrid
    {
        get
        {
            var grid = new Dictionary<string, string[]>(OtherBenchKnobs);
            if (Capacity is { } c) grid[c.Hyper] = c.Bench.ToArray();
            return grid;
        }
    }

    /// <summary>Attaches the method to <paramref name="encoder"/>; the returned object knows its parameters.</summary>
    public abstract AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h);
}

/// <summary>A method's size knob: the hyperparameter, the two values the benchmark searches, and the values the capacity
/// study grows it through (null: the study leaves the method out).</summary>
public sealed record CapacityKnob(string Hyper, IReadOnlyList<string> Bench, IReadOnlyList<string>? Study = null);

/// <summary>A published VTAB-1K accuracy (ViT-B/16, ImageNet-21k), percent: the mean of the three group means and/or
/// the plain 19-task mean, and the source (whose protocol may differ from ours: say so in it).</summary>
public sealed record PublishedFigure(double? MeanOfGroups, double? Mean19, string Source);

/// <summary>A method applied to one encoder: its trainable parameters, and merging where the method allows it.</summary>
public abstract class AppliedTuner
{
    protected AppliedTuner(TunerMethod method, Hyperparameters hypers, TunableEncoder encoder)
    {
        Method = method;
        Hypers = hypers;
        Encoder = encoder;
    }

    public TunerMethod Method { get; }
    public Hyperparameters Hypers { get; }
    public TunableEncoder Encoder { get; }
    public bool Merged { get; private set; }

    /// <summary>The parameters this method trains (new tuner parameters or selected base parameters).</summary>
    public abstract IEnumerable<Parameter> TrainableParameters();

    /// <summary>
    /// Merge order: wrappers of layers (phase 0) fold first, in the order they were applied (their nesting order);
    /// then hooks that sit before or after a sublayer (phase 1: RepAdapter, DiffFit γ), which fold into the
    /// neighbouring layer's already-merged weights.
    /// </summary>
    public virtual int MergePhase => 0;

    /// <summary>Base tensors a merge writes into (snapshotted by <see cref="PeftModel"/> so unmerge is exact).</summary>
    public virtual IEnumerable<Tensor> MergeTargets() => Array.Empty<Tensor>();

    /// <summary>Folds the method into the base weights; afterwards its own modules act as identity.</summary>
    public void Merge()
    {
        if (!Method.Mergeable)
            throw new PeftSharpException($"method '{Method.Id}' cannot be merged: it is not linear on the frozen path (prompts and non-linear adapters add inference cost by design)");
        if (Merged) return;
        using (no_grad()) FoldIntoBase();
        Merged = true;
        OnMergedChanged(true);
    }

    /// <summary>Marks the method active again; <see cref="PeftModel"/> restores the base tensors first.</summary>
    internal void MarkUnmerged()
    {
        Merged = false;
        OnMergedChanged(false);
    }

    protected virtual void FoldIntoBase() { }
    protected virtual void OnMergedChanged(bool merged) { }

    /// <summary>After a merge: removes the method's structures (hooks) so the model has the plain timm layout.
    /// Wrappers around modules are unwrapped by <see cref="PeftModel"/>.</summary>
    public virtual void Detach() { }
}

/// <summary>An applied method whose only effect is which base parameters train (linear, full, BitFit, ...).</summary>
public sealed class SelectionTuner : AppliedTuner
{
    readonly List<Parameter> parameters;

    public SelectionTuner(TunerMethod method, Hyperparameters hypers, TunableEncoder encoder, IEnumerable<Parameter> parameters)
        : base(method, hypers, encoder) => this.parameters = parameters.ToList();

    public override IEnumerable<Parameter> TrainableParameters() => parameters;
}

/// <summary>
/// The part of a model a method tunes: a stack of blocks with optional image-specific parts. Both the ViT and the
/// CLIP towers are encoders; <see cref="Root"/> is the module whose named paths targets are matched against.
/// </summary>
public sealed class TunableEncoder
{
    public TunableEncoder(string name, nn.Module root, IReadOnlyList<Block> blocks, int embedDim, VisionTransformer? vit,
                          IPatchEncoder? patches = null)
    {
        Name = name;
        Root = root;
        Blocks = blocks;
        EmbedDim = embedDim;
        Vit = vit;
        Patches = patches ?? vit;
        // Snapshot before any method attaches: selection methods (BitFit, LayerNorm, ...) choose among these only,
        // under their timm names, never among another method's parameters.
        BaseParameters = root.named_parameters().Select(p => (p.name, p.parameter)).ToList();
    }

    /// <summary>The encoder's own parameters with their timm names, as they were before any method was applied.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> BaseParameters { get; }

    /// <summary>"" for a plain ViT, "visual" or "text" for CLIP towers (the tower's prefix in the CLIP state dict).</summary>
    public string Name { get; }
    public nn.Module Root { get; }
    public IReadOnlyList<Block> Blocks { get; }
    public int EmbedDim { get; }
    /// <summary>The image encoder, when this is one (patch embedding, final norms, encoder-level prompts).</summary>
    public VisionTransformer? Vit { get; }

    /// <summary>The encoder of patch tokens (an image or a video ViT), for methods that need patches but not images.</summary>
    public IPatchEncoder? Patches { get; }

    public VisionTransformer RequireVit(string method) =>
        Vit ?? throw new PeftSharpException(Patches is VideoVisionTransformer
            ? $"method '{method}' applies to the image ViT only (it reads images or the image model's pooling), not to the video ViT"
            : $"method '{method}' needs an image encoder (patch tokens); the {Name} tower has none");

    public IPatchEncoder RequirePatches(string method) =>
        Patches ?? throw new PeftSharpException($"method '{method}' needs an encoder of patch tokens; the {Name} tower has none");

    /// <summary>True when the patch tokens are frames of a clip (a video encoder).</summary>
    public bool IsVideo => Patches is VideoVisionTransformer;

    public static TunableEncoder Of(VisionTransformer vit, string name = "") => new(name, vit, vit.blocks.ToList(), vit.EmbedDim, vit);
    public static TunableEncoder Of(VideoVisionTransformer video, string name = "") =>
        new(name, video, video.blocks.ToList(), video.EmbedDim, null, video);
    public static TunableEncoder Of(TextTransformer text, string name = "text") =>
        new(name, text, text.blocks.ToList(), (int)text.positional_embedding.shape[1], null);

    /// <summary>Base parameters of every LayerNorm (norm_pre, norm1/norm2 per block, norm, fc_norm, ln_final).</summary>
    public IEnumerable<(string Name, Parameter Parameter)> LayerNormParameters()
    {
        var norms = Root.named_modules().Where(m => m.module is LayerNorm)
                        .SelectMany(m => m.module.parameters()).ToHashSet(ReferenceEqualityComparer.Instance);
        return BaseParameters.Where(p => norms.Contains(p.Parameter));
    }

    /// <summary>Base parameters that are not the classification head.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> BackboneParameters() =>
        BaseParameters.Where(p => !IsHead(p.Name));

    public static bool IsHead(string name) => name.StartsWith("head.", StringComparison.Ordinal);
}
