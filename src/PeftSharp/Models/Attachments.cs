using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Models;

/// <summary>Named child modules a tuner added to a host module, in attachment order.</summary>
public sealed class Attachments<TModule> where TModule : nn.Module
{
    readonly List<(string Name, TModule Module)> items = new();

    public IEnumerable<TModule> Items => items.Select(i => i.Module);
    public IEnumerable<string> Names => items.Select(i => i.Name);
    public int Count => items.Count;

    public void Add(nn.Module host, string name, TModule module)
    {
        if (items.Any(i => i.Name == name))
            throw new PeftSharpException($"a tuner named '{name}' is already attached here");
        host.register_module(name, module);
        items.Add((name, module));
    }

    public bool Remove(nn.Module host, string name)
    {
        int index = items.FindIndex(i => i.Name == name);
        if (index < 0) return false;
        items.RemoveAt(index);
        ModuleSurgery.Unregister(host, name);
        return true;
    }
}

/// <summary>Named tuner modules attached to insertion points of a host module; one module may serve several points.</summary>
public sealed class PointAttachments<TPoint, TModule> where TPoint : struct, Enum where TModule : nn.Module, ITuner<TPoint>
{
    readonly Attachments<TModule> modules = new();
    readonly Dictionary<TPoint, List<TModule>> byPoint = new();

    public IEnumerable<TModule> Items => modules.Items;
    public IEnumerable<string> Names => modules.Names;
    public int Count => modules.Count;

    public void Add(nn.Module host, string name, TModule module, TPoint[] points)
    {
        if (points.Length == 0) throw new ArgumentException("a tuner needs at least one insertion point", nameof(points));
        modules.Add(host, name, module);
        foreach (var point in points.Distinct())
        {
            if (!byPoint.TryGetValue(point, out var list)) byPoint[point] = list = new List<TModule>();
            list.Add(module);
        }
    }

    public bool Remove(nn.Module host, string name)
    {
        var module = modules.Items.Zip(modules.Names).FirstOrDefault(p => p.Second == name).First;
        if (module is null) return false;
        foreach (var list in byPoint.Values) list.Remove(module);
        return modules.Remove(host, name);
    }

    public IReadOnlyList<TModule> At(TPoint point) =>
        byPoint.TryGetValue(point, out var list) ? list : Array.Empty<TModule>();

    /// <summary>Applies the tuners at a sequential point in attachment order.</summary>
    public Tensor Sequential(TPoint point, Tensor x, TokenLayout layout)
    {
        if (!byPoint.TryGetValue(point, out var list)) return x;
        foreach (var module in list) x = module.Apply(point, x, layout);
        return x;
    }
}
