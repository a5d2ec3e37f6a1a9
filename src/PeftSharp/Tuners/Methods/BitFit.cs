namespace PeftSharp.Tuners.Methods;

/// <summary>BitFit (Ben Zaken et al.): every bias of the backbone trains, LayerNorm and patch-embed biases included.</summary>
public sealed class BitFit : TunerMethod
{
    public override string Id => "bitfit";
    public override string Summary => "train every bias (incl. LayerNorm and patch-embed biases)";
    public override bool Mergeable => true;

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) =>
        new SelectionTuner(this, h, encoder, Biases(encoder));

    internal static IEnumerable<TorchSharp.Modules.Parameter> Biases(TunableEncoder encoder) =>
        encoder.BackboneParameters().Where(p => p.Name.Split('.')[^1].Contains("bias", StringComparison.Ordinal)).Select(p => p.Parameter);
}
