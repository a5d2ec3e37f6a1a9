using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Tuners;

/// <summary>An applied method made of wrappers around base layers (SSF, LoRA, DoRA, FacT): the wrappers' own
/// parameters train; merging folds each wrapper into its innermost layer.</summary>
public sealed class WrapperTuner<TWrapper> : AppliedTuner where TWrapper : ModuleWrapper
{
    readonly IReadOnlyList<TWrapper> wrappers;
    readonly Func<TWrapper, IEnumerable<Parameter>> parameters;
    readonly Action<TWrapper> fold;
    readonly Func<TWrapper, IEnumerable<Tensor>> foldTargets;
    readonly IReadOnlyList<Parameter> shared;

    public WrapperTuner(TunerMethod method, Hyperparameters hypers, TunableEncoder encoder, IReadOnlyList<TWrapper> wrappers,
                        Func<TWrapper, IEnumerable<Parameter>> parameters, Action<TWrapper> fold,
                        Func<TWrapper, IEnumerable<Tensor>> foldTargets, IReadOnlyList<Parameter>? shared = null)
        : base(method, hypers, encoder)
    {
        this.wrappers = wrappers;
        this.parameters = parameters;
        this.fold = fold;
        this.foldTargets = foldTargets;
        this.shared = shared ?? Array.Empty<Parameter>();
    }

    public IReadOnlyList<TWrapper> Wrappers => wrappers;

    public override IEnumerable<Parameter> TrainableParameters() => shared.Concat(wrappers.SelectMany(parameters));
    public override IEnumerable<Tensor> MergeTargets() => wrappers.SelectMany(foldTargets);

    protected override void FoldIntoBase()
    {
        foreach (var w in wrappers) fold(w);
    }

    protected override void OnMergedChanged(bool merged)
    {
        foreach (var w in wrappers) w.Merged = merged;
    }
}
