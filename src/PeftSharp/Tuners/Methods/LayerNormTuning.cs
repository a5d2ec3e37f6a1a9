namespace PeftSharp.Tuners.Methods;

/// <summary>LayerNorm tuning: every LayerNorm weight and bias trains (25 LayerNorms in ViT-B).</summary>
public sealed class LayerNormTuning : TunerMethod
{
    public override string Id => "layernorm";
    public override string Summary => "train every LayerNorm weight and bias";
    public override bool Mergeable => true;

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) =>
        new SelectionTuner(this, h, encoder, encoder.LayerNormParameters().Where(p => !TunableEncoder.IsHead(p.Name)).Select(p => p.Parameter));
}
