using System.Reflection;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeftSharp.Models;

/// <summary>
/// Replacing a registered child module in TorchSharp needs two things kept in step: the C# field the forward pass
/// reads and the module registry that named_modules/state_dict walk (register_module throws on an existing name, and
/// assigning a field after RegisterComponents does not update the registry). This does both, in place, keeping the
/// child's position in the registry so state-dict order stays timm's.
/// </summary>
public static class ModuleSurgery
{
    static readonly FieldInfo? SubmodulesField = typeof(nn.Module).GetField("_internal_submodules", BindingFlags.Instance | BindingFlags.NonPublic);

    /// <summary>Whether this TorchSharp keeps its child registry where surgery reaches it (see Interop.InteropChecks).</summary>
    public static bool RegistryAccessible => SubmodulesField?.FieldType == typeof(OrderedDict<string, nn.Module>);

    static FieldInfo Submodules => SubmodulesField
        ?? throw new InvalidOperationException("TorchSharp's Module._internal_submodules was not found; this TorchSharp version is not supported");

    static OrderedDict<string, nn.Module> Registry(nn.Module host) => (OrderedDict<string, nn.Module>)Submodules.GetValue(host)!;

    /// <summary>Replaces child <paramref name="name"/> of <paramref name="host"/> by <paramref name="replacement"/>.</summary>
    public static void Replace(nn.Module host, string name, nn.Module replacement)
    {
        var registry = Registry(host);
        if (!registry.ContainsKey(name))
            throw new ArgumentException($"{host.GetName()} has no child module '{name}'");
        var field = host.GetType().GetField(name, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            ?? throw new ArgumentException($"{host.GetType().Name} has no field '{name}' to hold the replacement");
        if (!field.FieldType.IsInstanceOfType(replacement))
            throw new ArgumentException($"{host.GetType().Name}.{name} is a {field.FieldType.Name}; cannot hold a {replacement.GetType().Name}");
        field.SetValue(host, replacement);
        registry[name] = replacement;
    }

    /// <summary>Removes a child that was added with register_module (tuner attachments, not fields).</summary>
    public static void Unregister(nn.Module host, string name) => Registry(host).Remove(name);

    /// <summary>The module at a dotted path ("blocks.3.attn.qkv"), or null.</summary>
    public static nn.Module? Find(nn.Module root, string path)
    {
        nn.Module current = root;
        foreach (var part in path.Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            var registry = Registry(current);
            if (!registry.TryGetValue(part, out var child)) return null;
            current = child;
        }
        return current;
    }

    /// <summary>Replaces the module at a dotted path.</summary>
    public static void ReplaceAt(nn.Module root, string path, nn.Module replacement)
    {
        int dot = path.LastIndexOf('.');
        var parent = dot < 0 ? root : Find(root, path[..dot]) ?? throw new ArgumentException($"no module at '{path[..dot]}'");
        Replace(parent, dot < 0 ? path : path[(dot + 1)..], replacement);
    }
}
