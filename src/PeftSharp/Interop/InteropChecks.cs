using System.Reflection;
using System.Runtime.InteropServices;
using PeftSharp.Models;

namespace PeftSharp.Interop;

/// <summary>One reach-around past a library's public API: what it needs, whether this process has it, and what is
/// lost without it.</summary>
public sealed record InteropCheck(string Name, string Needs, bool Present, string WithoutIt);

/// <summary>
/// The places PeftSharp depends on what TorchSharp, libtorch and glibc do not promise: private fields read by
/// reflection and native symbols called by their mangled names. These are what a TorchSharp upgrade breaks, so each is
/// listed here with a check that names it when it is gone (a test runs them all).
/// </summary>
public static class InteropChecks
{
    public static IReadOnlyList<InteropCheck> All()
    {
        var checks = new List<InteropCheck>
        {
            new("module surgery", "TorchSharp nn.Module._internal_submodules (private field)", ModuleSurgery.RegistryAccessible,
                "tuners cannot put wrappers in place of layers: no method can be applied"),
            new("custom autograd placeholders", "TorchSharp AutogradContext._node and autograd.Node`1._outputCache (private fields)",
                CustomAutograd.CanReleaseOutputPlaceholders,
                "fused low-rank and scaling nodes keep an output-sized placeholder each until the graph is freed (more memory, same results)"),
        };
        checks.AddRange(NativeSymbols(typeof(Autocast).GetNestedType("Native", BindingFlags.NonPublic)!, "libtorch autocast",
            "bf16 precision cannot run (float32 is unaffected)"));
        checks.AddRange(NativeSymbols(typeof(NativeHeap), "glibc heap",
            "the heap settings and the per-step figure of allocated bytes are skipped (more memory, same results)"));
        return checks;
    }

    /// <summary>One check per DllImport of <paramref name="host"/>: is its entry point exported by its library here?</summary>
    public static IEnumerable<InteropCheck> NativeSymbols(Type host, string what, string withoutIt)
    {
        foreach (var method in host.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (method.GetCustomAttribute<DllImportAttribute>() is not { } import) continue;
            string entry = import.EntryPoint ?? method.Name;
            bool present = NativeLibrary.TryLoad(import.Value, host.Assembly, null, out var handle) && NativeLibrary.TryGetExport(handle, entry, out _);
            yield return new InteropCheck($"{what}: {method.Name}", $"{entry} in {import.Value}", present, withoutIt);
        }
    }
}
