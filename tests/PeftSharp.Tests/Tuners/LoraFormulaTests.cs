using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>The LoRA layer's fused forward (low-rank product accumulated into the base output) against the written-out
/// formulas, in training mode with dropout drawing its mask.</summary>
public class LoraFormulaTests
{
    static LoraLinear Layer(bool dora, int[]? sections, double dropout, out TorchSharp.Modules.Linear linear)
    {
        manual_seed(3);
        linear = nn.Linear(16, 12);
        var layer = new LoraLinear(linear, rank: 4, scaling: 2.0, dropout: dropout, rowSections: sections, dora: dora);
        using (no_grad())
        {
            nn.init.normal_(layer.lora_B.weight!);   // B starts at zero; make the update visible
            layer.lora_magnitude_vector?.mul_(1.5);
        }
        layer.train();
        return layer;
    }

    /// <summary>x under the mask the layer draws next (it flattens tokens to rows first; the order is the same).</summary>
    static Tensor Dropped(Tensor x, double p) => p > 0 ? x * ParallelDropout.Mask(new[] { x.shape[0] * x.shape[1], x.shape[2] }, p).view(x.shape) : x;

    [Theory]
    [InlineData(null)]
    [InlineData(new[] { 0, 2 })]   // q and v of a fused qkv
    public void Lora_is_base_plus_scaled_low_rank_of_the_dropped_input(int[]? sections)
    {
        var layer = Layer(dora: false, sections, dropout: 0.3, out var linear);
        var x = randn(2, 5, 16);
        manual_seed(77);
        var actual = layer.forward(x);
        manual_seed(77);
        var dropped = Dropped(x, 0.3);
        var expected = linear.forward(x) + F.linear(dropped, layer.DeltaWeight());
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-5, what: "lora");
        if (sections is not null)   // k's rows are the base's alone
            TensorAssert.Close(linear.forward(x)[.., .., 4..8], actual[.., .., 4..8], atol: 1e-6, rtol: 1e-6, what: "k rows");
    }

    [Theory]
    [InlineData(0.3)]   // peft feeds the dropped input to the rescaled base term too
    [InlineData(0.0)]
    public void Dora_is_peft_formula(double dropout)
    {
        var layer = Layer(dora: true, null, dropout, out var linear);
        var x = randn(2, 5, 16);
        manual_seed(77);
        var actual = layer.forward(x);
        manual_seed(77);
        var dropped = Dropped(x, dropout);
        var weight = linear.weight!;
        var delta = layer.DeltaWeight();
        var scale = layer.lora_magnitude_vector! / (weight + delta).pow(2).sum(1).sqrt();
        var expected = linear.forward(x) + (scale - 1) * F.linear(dropped, weight) + scale * F.linear(dropped, delta);
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-5, what: $"dora, dropout {dropout}");
    }
}
