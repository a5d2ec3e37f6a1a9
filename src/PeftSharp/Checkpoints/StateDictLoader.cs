using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Checkpoints;

/// <summary>What a load matched and what it did not, by name.</summary>
public sealed record LoadReport(
    IReadOnlyList<string> Loaded,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    IReadOnlyList<string> ShapeMismatches,
    IReadOnlyList<string> Notes)
{
    public bool IsStrictMatch => Missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatches.Count == 0;

    public string Describe()
    {
        var lines = new List<string> { $"loaded {Loaded.Count} tensors" };
        if (Missing.Count > 0) lines.Add($"missing ({Missing.Count}): {string.Join(", ", Missing)}");
        if (Unexpected.Count > 0) lines.Add($"unexpected ({Unexpected.Count}): {string.Join(", ", Unexpected)}");
        if (ShapeMismatches.Count > 0) lines.Add($"shape mismatches ({ShapeMismatches.Count}): {string.Join("; ", ShapeMismatches)}");
        lines.AddRange(Notes);
        return string.Join(Environment.NewLine, lines);
    }

    /// <summary>Throws naming every problem unless the load matched exactly (apart from the allowed names).</summary>
    public LoadReport ThrowUnlessStrict(string origin, Func<string, bool>? allowedMissing = null)
    {
        var missing = Missing.Where(m => allowedMissing?.Invoke(m) != true).ToList();
        if (missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatches.Count == 0) return this;
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"missing keys: {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? $" (+{missing.Count - 8} more)" : "")}");
        if (Unexpected.Count > 0) parts.Add($"unexpected keys: {string.Join(", ", Unexpected.Take(8))}{(Unexpected.Count > 8 ? $" (+{Unexpected.Count - 8} more)" : "")}");
        if (ShapeMismatches.Count > 0) parts.Add($"shape mismatches: {string.Join("; ", ShapeMismatches.Take(4))}");
        throw new PeftSharpException($"{origin}: checkpoint does not match the model: {string.Join("; ", parts)}");
    }
}

/// <summary>Copies named tensors into a module's parameters and buffers, tensor by tensor.</summary>
public static class StateDictLoader
{
    /// <param name="skip">Model keys to leave as they are (e.g. a head of another size), reported as notes.</param>
    public static LoadReport Load(nn.Module module, ITensorSource source, Func<string, bool>? skip = null,
                                  IEnumerable<string>? extraUnexpected = null)
    {
        var loaded = new List<string>();
        var missing = new List<string>();
        var mismatched = new List<string>();
        var notes = new List<string>();
        var used = new HashSet<string>();
        var targets = module.named_parameters().Select(p => (p.name, (Tensor)p.parameter))
            .Concat(module.named_buffers().Select(b => (b.name, b.buffer)));
        using (no_grad())
        {
            foreach (var (name, target) in targets)
            {
                if (!source.Contains(name))
                {
                    missing.Add(name);
                    continue;
                }
                used.Add(name);
                if (skip?.Invoke(name) == true)
                {
                    notes.Add($"kept the model's own {name} (not loaded)");
                    continue;
                }
                var shape = source.Shape(name);
                if (!shape.SequenceEqual(target.shape))
                {
                    mismatched.Add($"{name}: checkpoint [{string.Join(", ", shape)}] vs model [{string.Join(", ", target.shape)}]");
                    continue;
                }
                using var value = source.Read(name);
                target.copy_(value);
                loaded.Add(name);
            }
        }
        var unexpected = source.Keys.Where(k => !used.Contains(k)).ToList();
        if (source is MappedSource mapped) unexpected.AddRange(mapped.Unmapped());
        if (extraUnexpected != null) unexpected.AddRange(extraUnexpected);
        return new LoadReport(loaded, missing, unexpected, mismatched, notes);
    }

    /// <summary>The module's parameters and buffers by name (references, not copies).</summary>
    public static Dictionary<string, Tensor> StateDict(nn.Module module)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var (name, p) in module.named_parameters()) result[name] = p;
        foreach (var (name, b) in module.named_buffers()) result[name] = b;
        return result;
    }
}
