using System.Text.RegularExpressions;
using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners;

/// <summary>
/// A tuner layer that wraps a base module (Hugging Face peft's BaseTunerLayer): the base sits under "base_layer",
/// the tuner's own tensors beside it. Wrappers nest when methods compose (ssf+lora); the innermost base is the
/// plain timm module that merges write into and that <see cref="PeftModel.MergeAndUnload"/> puts back.
/// </summary>
public abstract class ModuleWrapper : nn.Module<Tensor, Tensor>
{
    public Module<Tensor, Tensor> base_layer;

    protected ModuleWrapper(string name, Module<Tensor, Tensor> baseLayer) : base(name) => base_layer = baseLayer;

    /// <summary>When true the base already holds this wrapper's effect, and forward is the base alone.</summary>
    public bool Merged { get; set; }

    public nn.Module Innermost => base_layer is ModuleWrapper w ? w.Innermost : base_layer;

    public Linear InnermostLinear => Innermost as Linear
        ?? throw new InvalidOperationException($"{GetName()} does not wrap a Linear layer");

    /// <summary>Runs <paramref name="forward"/> on <paramref name="x"/> with its token dimensions flattened to rows
    /// ([rows, in] → [rows, out]) and gives the result x's leading shape back, so a wrapper's products (and in-place
    /// accumulations into the base output) are plain 2-D matrix products.</summary>
    protected static Tensor OnRows(Tensor x, Func<Tensor, Tensor> forward)
    {
        var shape = x.shape;
        var result = forward(x.reshape(-1, shape[^1]));
        shape[^1] = result.shape[1];
        return result.view(shape);
    }

    /// <summary>The base layer's output on <paramref name="rows"/>, free to be updated in place. A plain Linear's
    /// backward needs neither its output nor what is added to it; a wrapped base may keep its output for its own
    /// backward (SSF's node does), so that output is copied first.</summary>
    protected Tensor BaseOutputToUpdate(Tensor rows)
    {
        var output = base_layer.forward(rows);
        return base_layer is Linear ? output : output.clone();
    }

    /// <summary>The plain module under every wrapper of a (possibly wrapped) module.</summary>
    public static nn.Module Unwrap(nn.Module m) => m is ModuleWrapper w ? w.Innermost : m;
}

/// <summary>Finds the modules a method wraps, by peft-style target names.</summary>
public static class TargetMatcher
{
    /// <summary>
    /// Modules under <paramref name="root"/> whose innermost layer is a <typeparamref name="TLayer"/> and whose path
    /// matches one of <paramref name="targets"/>: a plain name matches the last path component(s) ("qkv", "mlp.fc1"),
    /// a pattern with '*' matches the whole path ("blocks.*.attn.proj"). Paths inside wrappers are skipped.
    /// </summary>
    public static List<(string Path, Module<Tensor, Tensor> Module)> Find<TLayer>(nn.Module root, IEnumerable<string> targets, string method)
        where TLayer : nn.Module
    {
        var patterns = targets.Select(t => t.Contains('*')
            ? new Regex("^" + Regex.Escape(t).Replace("\\*", "[^.]+") + "$")
            : new Regex("(^|\\.)" + Regex.Escape(t) + "$")).ToList();
        var found = new List<(string, Module<Tensor, Tensor>)>();
        foreach (var (path, module) in root.named_modules())
        {
            if (path.Length == 0 || path.Contains(".base_layer", StringComparison.Ordinal) || path.StartsWith("base_layer", StringComparison.Ordinal)) continue;
            if (module is not Module<Tensor, Tensor> typed || ModuleWrapper.Unwrap(module) is not TLayer) continue;
            if (patterns.Any(p => p.IsMatch(path))) found.Add((path, typed));
        }
        if (found.Count == 0)
            throw new PeftSharpException($"method '{method}': targets '{string.Join(",", targets)}' match no {typeof(TLayer).Name} layer of the model");
        return found;
    }

    /// <summary>Wraps the module at <paramref name="path"/> in place.</summary>
    public static void Wrap(nn.Module root, string path, ModuleWrapper wrapper) => ModuleSurgery.ReplaceAt(root, path, wrapper);
}
