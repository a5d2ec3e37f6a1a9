namespace PeftSharp.Tuners.Methods;

/// <summary>Partial-k (VPT paper's baseline): fine-tune the last k blocks and the final norm, freeze the rest.</summary>
public sealed class PartialK : TunerMethod
{
    public override CapacityKnob? Capacity => new("k", ["1", "2"]);
    public override string Id => "partial-k";
    public override string Summary => "fine-tune the last k blocks (and the final norm)";
    public override bool Mergeable => true;
    public override IReadOnlyList<HyperSpec> Hypers { get; } = new[]
    {
        HyperSpec.Int("k", 1, new[] { 1, 2, 4 }, "number of final blocks to tune", min: 0),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        int k = h.Int("k"), depth = encoder.Blocks.Count;
        if (k > depth) throw new PeftSharpException($"method 'partial-k': k = {k} exceeds the {depth} blocks of the model");
        var tuned = encoder.Blocks.Skip(depth - k).SelectMany(b => b.parameters()).ToHashSet(ReferenceEqualityComparer.Instance);
        var selected = encoder.BackboneParameters().Where(p => tuned.Contains(p.Parameter) || IsFinalNorm(p.Name));
        return new SelectionTuner(this, h, encoder, selected.Select(p => p.Parameter));
    }

    static bool IsFinalNorm(string name) =>
        name.StartsWith("norm.", StringComparison.Ordinal) || name.StartsWith("fc_norm.", StringComparison.Ordinal) ||
        name.StartsWith("ln_final.", StringComparison.Ordinal);
}
