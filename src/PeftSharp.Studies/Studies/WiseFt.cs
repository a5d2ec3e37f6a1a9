using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Studies;

/// <summary>
/// WiSE-FT (Wortsman et al., CVPR 2022): the weight-space interpolation θ(α) = (1 − α)·θ₀ + α·θ₁ between a starting
/// model θ₀ and its fine-tuned version θ₁. The formula is exact at both ends for finite weights (1·a + 0·b = a,
/// 0·a + 1·b = b), so α = 0 and α = 1 give the two models' predictions bit for bit.
/// </summary>
public static class WiseFt
{
    /// <summary>α ∈ {0, 0.1, …, 1}, as the study sweeps it.</summary>
    public static IReadOnlyList<double> Alphas { get; } = Enumerable.Range(0, 11).Select(i => i / 10.0).ToList();

    /// <summary>(1 − α)·start + α·end for every tensor; both must hold the same names, shapes and dtypes. Integer
    /// tensors (counters, indices) must be equal and are copied. The caller owns the result.</summary>
    public static Dictionary<string, Tensor> Interpolate(IReadOnlyDictionary<string, Tensor> start, IReadOnlyDictionary<string, Tensor> end, double alpha)
    {
        if (!(alpha >= 0 && alpha <= 1)) throw new PeftSharpException($"WiSE-FT: α must be in [0, 1], got {alpha}");
        var missing = start.Keys.Except(end.Keys).Concat(end.Keys.Except(start.Keys)).ToList();
        if (missing.Count > 0) throw new PeftSharpException($"WiSE-FT: the two models differ in tensor '{missing[0]}'");
        var result = new Dictionary<string, Tensor>();
        using var _ = no_grad();
        foreach (var (name, a) in start)
        {
            var b = end[name];
            if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype)
                throw new PeftSharpException($"WiSE-FT: '{name}' is [{string.Join(", ", a.shape)}] {a.dtype} in one model and [{string.Join(", ", b.shape)}] {b.dtype} in the other");
            if (a.is_floating_point())
            {
                using var scaledStart = a.mul(1 - alpha);
                using var scaledEnd = b.mul(alpha);
                result[name] = scaledStart.add(scaledEnd);
            }
            else
            {
                using var same = a.eq(b).all();
                if (!same.item<bool>()) throw new PeftSharpException($"WiSE-FT: integer tensor '{name}' differs between the two models");
                result[name] = a.clone();
            }
        }
        return result;
    }

    /// <summary>A detached copy of every parameter and buffer of <paramref name="module"/>, by state-dict name.</summary>
    public static Dictionary<string, Tensor> Snapshot(nn.Module module) =>
        module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    /// <summary>Copies <paramref name="state"/> into the module's tensors of the same names (all of them must be there).</summary>
    public static void Load(nn.Module module, IReadOnlyDictionary<string, Tensor> state)
    {
        var own = module.state_dict();
        if (own.Count != state.Count || own.Keys.Any(k => !state.ContainsKey(k)))
            throw new PeftSharpException($"WiSE-FT: the state does not match the model ({own.Keys.FirstOrDefault(k => !state.ContainsKey(k)) ?? "extra tensors"})");
        using var _ = no_grad();
        foreach (var (name, tensor) in own) tensor.copy_(state[name]);
    }

    public static void Dispose(IReadOnlyDictionary<string, Tensor> state)
    {
        foreach (var t in state.Values) t.Dispose();
    }
}

/// <summary>
/// The two ends of WiSE-FT for one tuned method. α = 0 is the pretrained backbone with the linear probe's head (our
/// stand-in for the study's zero-shot model, which needs a text tower); α = 1 is the fine-tuned model. A method that
/// merges is merged first, so its delta ΔW is what gets scaled (W₀ + α·ΔW); a method that does not (an adapter)
/// interpolates its own parameters from their initial values. That makes α = 0 the pretrained model only when the
/// method starts as the identity, with a zero-initialised output projection (the Pfeiffer adapter, AdaptFormer);
/// the Houlsby adapter's random init and VPT's prompts do not, so they are not swept.
/// </summary>
public sealed class WiseFtModel : IDisposable
{
    readonly Dictionary<string, Tensor> start;
    readonly Dictionary<string, Tensor> end;

    /// <param name="finetuned">The trained method (merged here when it can be).</param>
    /// <param name="initial">The same model's <see cref="WiseFt.Snapshot"/> taken right after the method was attached, before training.</param>
    /// <param name="probeHead">The linear probe's head tensors (by the same state-dict names), which replace the initial head.</param>
    public WiseFtModel(PeftModel finetuned, IReadOnlyDictionary<string, Tensor> initial, IReadOnlyDictionary<string, Tensor> probeHead)
    {
        Model = finetuned;
        if (finetuned.Mergeable && !finetuned.IsMerged) finetuned.Merge();
        end = WiseFt.Snapshot(finetuned.Root);
        start = initial.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        foreach (var (name, tensor) in probeHead)
        {
            if (!start.TryGetValue(name, out var old) || !old.shape.SequenceEqual(tensor.shape))
                throw new PeftSharpException($"WiSE-FT: the linear probe's '{name}' does not fit the tuned model");
            old.Dispose();
            start[name] = tensor.detach().clone();
        }
    }

    public PeftModel Model { get; }

    /// <summary>Sets the model's weights to θ(α).</summary>
    public void SetAlpha(double alpha)
    {
        var state = WiseFt.Interpolate(start, end, alpha);
        try { WiseFt.Load(Model.Root, state); }
        finally { WiseFt.Dispose(state); }
    }

    public void Dispose()
    {
        WiseFt.Dispose(start);
        WiseFt.Dispose(end);
    }
}
