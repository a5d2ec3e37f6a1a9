namespace PeftSharp.Tuners.Methods;

/// <summary>Full fine-tuning: every backbone parameter trains.</summary>
public sealed class FullFineTuning : TunerMethod
{
    public override bool IsPeft => false;
    public override string Id => "full";
    public override string Summary => "full fine-tuning: every parameter trains";
    public override bool Mergeable => true;

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) =>
        new SelectionTuner(this, h, encoder, encoder.BackboneParameters().Select(p => p.Parameter));
}
