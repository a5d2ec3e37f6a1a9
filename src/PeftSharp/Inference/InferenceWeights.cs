using System.Reflection;
using PeftSharp.Tuners;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Inference;

/// <summary>
/// Inference under bf16 autocast with each linear layer's weights cast once, not at every batch. libtorch's autocast
/// casts a float32 weight to bf16 at every product unless the weight is a trainable leaf, and in inference none is;
/// the cast here is the same rounding, so every product, and so every logit, is the same bit for bit (test). It saves
/// the per-batch casts: ViT-Tiny at 224 px, batch 8, 1.2× the images per second of plain autocast, measured here
/// (docs/performance.md).
/// <para>Parameters and the module registry are untouched: the scope points the fields a forward pass reads (a
/// module's <c>qkv</c>, <c>fc1</c>, <c>head</c>, typed as any module) at a cast copy of the layer and puts the layer
/// back on disposal. A tuner's own layers (the base layer a wrapper reads, and may take the weight of) are left alone,
/// as is everything in float32.</para>
/// </summary>
public static class InferenceWeights
{
    /// <summary>Casts <paramref name="model"/>'s linear layers once for the scope when <paramref name="precision"/> is
    /// bf16 (no model: nothing to cast); the model must not train or change its weights until the scope is disposed,
    /// and its forward passes run under <see cref="Interop.Autocast"/> to the same precision.</summary>
    public static IDisposable CastOnce(nn.Module? model, Precision precision) =>
        model is null || precision == Precision.Float32 ? new Scope([]) : new Scope(Swaps(model));

    static List<Swap> Swaps(nn.Module model)
    {
        var casts = new Dictionary<Linear, CastLinear>(ReferenceEqualityComparer.Instance);
        var swaps = new List<Swap>();
        var hosts = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance) { model };
        foreach (var (_, module) in model.named_modules()) hosts.Add(module);
        foreach (var host in hosts.Where(h => h is not ModuleWrapper))
            foreach (var field in host.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            {
                if (!field.FieldType.IsAssignableFrom(typeof(CastLinear)) || field.GetValue(host) is not Linear linear) continue;
                if (linear.weight is not { dtype: ScalarType.Float32 }) continue;
                if (!casts.TryGetValue(linear, out var cast)) casts[linear] = cast = new CastLinear(linear, ScalarType.BFloat16);
                field.SetValue(host, cast);
                swaps.Add(new Swap(host, field, linear, cast));
            }
        return swaps;
    }

    sealed record Swap(nn.Module Host, FieldInfo Field, Linear Original, CastLinear Cast);

    sealed class Scope(List<Swap> swaps) : IDisposable
    {
        public void Dispose()
        {
            foreach (var swap in swaps) swap.Field.SetValue(swap.Host, swap.Original);
            foreach (var cast in swaps.Select(s => s.Cast).Distinct()) cast.Dispose();
            swaps.Clear();
        }
    }

    /// <summary>A linear layer's product with its weight and bias already in <c>dtype</c>.</summary>
    sealed class CastLinear : nn.Module<Tensor, Tensor>
    {
        readonly Tensor weight;
        readonly Tensor? bias;

        public CastLinear(Linear linear, ScalarType dtype) : base(nameof(CastLinear))
        {
            using var _ = no_grad();
            weight = linear.weight!.detach().to(dtype);
            bias = linear.bias?.detach().to(dtype);
        }

        public override Tensor forward(Tensor x) => nn.functional.linear(x, weight, bias);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                weight.Dispose();
                bias?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
