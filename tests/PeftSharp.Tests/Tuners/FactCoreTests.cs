using PeftSharp.Tuners.Methods;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

/// <summary>FacT-TK's per-section cores against their definition in the FacT code: C ×₃ P[:, section], that is
/// M[i, j] = Σ_l C[i, j, l] P[l, section].</summary>
public class FactCoreTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Tucker_cores_are_the_core_tensor_times_the_sections_factor_column(bool stacked)
    {
        manual_seed(11);
        const int d = 4, ratio = 2, sectionsPerLayer = 4 + 2 * ratio;
        var factors = new FactFactors(dim: 8, d, tuckerSlices: 3 * sectionsPerLayer);
        const int layer = 1, first = 4, count = 2;
        var cores = factors.TuckerCores(layer, first, count, stacked, ratio);
        Assert.Equal(stacked ? new long[] { count * d, d } : new long[] { d, count * d }, cores.shape);
        for (int k = 0; k < count; k++)
        {
            var expected = einsum("ijl,l->ij", factors.core!, factors.factor![.., sectionsPerLayer * layer + first + k]);
            var section = stacked ? cores[(k * d)..((k + 1) * d)] : cores[.., (k * d)..((k + 1) * d)];
            TensorAssert.Close(expected, section, atol: 1e-6, what: $"section {k}");
        }
    }
}
