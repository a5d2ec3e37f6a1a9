namespace PeftSharp.Tuners.Methods;

/// <summary>Linear probing: the backbone stays frozen, only the head trains (the head is PeftModel's business).</summary>
public sealed class LinearProbe : TunerMethod
{
    public override bool IsPeft => false;
    public override string Id => "linear";
    public override string Summary => "linear probe: train the classification head only";
    public override bool Mergeable => true;

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) =>
        new SelectionTuner(this, h, encoder, Array.Empty<TorchSharp.Modules.Parameter>());
}
