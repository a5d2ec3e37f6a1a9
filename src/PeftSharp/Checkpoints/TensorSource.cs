using static TorchSharp.torch;

namespace PeftSharp.Checkpoints;

/// <summary>Named tensors read lazily, one at a time, so a large checkpoint is never held twice in memory.</summary>
public interface ITensorSource
{
    /// <summary>Where the tensors come from, for messages.</summary>
    string Origin { get; }
    IEnumerable<string> Keys { get; }
    bool Contains(string key);
    long[] Shape(string key);
    /// <summary>A new tensor the caller owns.</summary>
    Tensor Read(string key);
}

/// <summary>The tensors of a safetensors file.</summary>
public sealed class SafeTensorsSource : ITensorSource
{
    readonly SafeTensorsFile file;

    public SafeTensorsSource(SafeTensorsFile file) => this.file = file;

    public string Origin => file.Path;
    public IEnumerable<string> Keys => file.Tensors.Select(t => t.Name);
    public bool Contains(string key) => file.Contains(key);
    public long[] Shape(string key) => file.Info(key).Shape;
    public Tensor Read(string key) => file.ReadTensor(key);
}

/// <summary>Tensors held in memory (a state dict); Read returns a copy so callers may dispose it.</summary>
public sealed class DictionarySource : ITensorSource
{
    readonly IReadOnlyDictionary<string, Tensor> tensors;

    public DictionarySource(IReadOnlyDictionary<string, Tensor> tensors, string origin = "state dict")
    {
        this.tensors = tensors;
        Origin = origin;
    }

    public string Origin { get; }
    public IEnumerable<string> Keys => tensors.Keys;
    public bool Contains(string key) => tensors.ContainsKey(key);
    public long[] Shape(string key) => tensors[key].shape;
    public Tensor Read(string key) => tensors[key].detach().clone();
}

/// <summary>
/// A view of another source under different names: each target key is computed from one or more source keys
/// (renamed, transposed, fused). Source keys no rule uses are reported as unexpected.
/// </summary>
public sealed class MappedSource : ITensorSource
{
    readonly ITensorSource inner;
    readonly Dictionary<string, (long[] Shape, Func<Tensor> Read, string[] From)> map = new();

    public MappedSource(ITensorSource inner) => this.inner = inner;

    public string Origin => inner.Origin;
    public IEnumerable<string> Keys => map.Keys;
    public bool Contains(string key) => map.ContainsKey(key);
    public long[] Shape(string key) => map[key].Shape;
    public Tensor Read(string key) => map[key].Read();
    public ITensorSource Inner => inner;

    /// <summary>Source keys that no target key reads.</summary>
    public IEnumerable<string> Unmapped()
    {
        var used = map.Values.SelectMany(v => v.From).ToHashSet();
        return inner.Keys.Where(k => !used.Contains(k));
    }

    public void Rename(string from, string to) =>
        map[to] = (inner.Shape(from), () => inner.Read(from), new[] { from });

    public void Add(string to, long[] shape, Func<Tensor> read, params string[] from) => map[to] = (shape, read, from);
}
