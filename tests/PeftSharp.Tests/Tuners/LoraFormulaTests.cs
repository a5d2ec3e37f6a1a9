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
        var layer = new LoraLinear(linear, rank: 4, scaling: Scaling, dropout: dropout, rowSections: sections, dora: dora);
        using (no_grad())
        {
            nn.init.normal_(layer.lora_B.weight!);   // B starts at zero; make the update visible
            layer.lora_magnitude_vector?.mul_(1.5);
        }
        layer.train();
        return layer;
    }

    const double Scaling = 2.0;   // the s every layer here is built with

    /// <summary>ΔW = s · B A written out from the layer's parameters, element by element in double precision: row o of
    /// the base's output takes row (position of o's section among the selected sections) · 4 + o mod 4 of B, and rows
    /// of unselected sections (k, when q and v are chosen) are zero. Nothing of the layer's own ΔW code is used.</summary>
    static Tensor ExpectedDelta(LoraLinear layer, int[]? sections)
    {
        var a = layer.lora_A.weight!.detach().to(ScalarType.Float64).data<double>().ToArray();   // [rank, in]
        var b = layer.lora_B.weight!.detach().to(ScalarType.Float64).data<double>().ToArray();   // [rows of B, rank]
        int rank = (int)layer.lora_A.weight!.shape[0], inF = (int)layer.lora_A.weight!.shape[1], outF = 12, section = 4;
        var delta = new double[outF * inF];
        for (int o = 0; o < outF; o++)
        {
            int bRow = sections is null ? o : Array.IndexOf(sections, o / section) is int k and >= 0 ? k * section + o % section : -1;
            if (bRow < 0) continue;
            for (int i = 0; i < inF; i++)
            {
                double sum = 0;
                for (int r = 0; r < rank; r++) sum += b[bRow * rank + r] * a[r * inF + i];
                delta[o * inF + i] = Scaling * sum;
            }
        }
        return tensor(delta, new long[] { outF, inF }).to(ScalarType.Float32);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(new[] { 0, 2 })]
    public void Delta_weight_is_scaled_B_times_A_with_zero_rows_outside_the_sections(int[]? sections)
    {
        var layer = Layer(dora: false, sections, dropout: 0, out _);
        Assert.Equal(sections is null ? 12 : 8, layer.lora_B.weight!.shape[0]);
        var expected = ExpectedDelta(layer, sections);
        Assert.True(expected.abs().sum().item<float>() > 1, "the update is visible");
        TensorAssert.Close(expected, layer.DeltaWeight(), atol: 1e-5, rtol: 1e-5, what: "ΔW");
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
        var expected = linear.forward(x) + F.linear(dropped, ExpectedDelta(layer, sections));
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
        var delta = ExpectedDelta(layer, null);
        var scale = layer.lora_magnitude_vector! / (weight + delta).pow(2).sum(1).sqrt();
        var expected = linear.forward(x) + (scale - 1) * F.linear(dropped, weight) + scale * F.linear(dropped, delta);
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-5, what: $"dora, dropout {dropout}");
    }
}
