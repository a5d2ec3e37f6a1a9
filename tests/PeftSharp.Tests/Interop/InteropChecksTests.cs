using PeftSharp.Interop;

namespace PeftSharp.Tests.Interop;

/// <summary>Fails loudly, naming the private member or symbol, when a TorchSharp, libtorch or glibc upgrade takes away
/// something PeftSharp reaches past their public API for.</summary>
public class InteropChecksTests
{
    [Fact]
    public void Every_reach_around_finds_what_it_needs()
    {
        var checks = InteropChecks.All();
        // Two reflection checks, seven autocast symbols, two glibc symbols.
        Assert.Equal(11, checks.Count);
        var missing = checks.Where(c => !c.Present).Select(c => $"{c.Name}: {c.Needs} is missing ({c.WithoutIt})").ToList();
        Assert.True(missing.Count == 0, "missing in this TorchSharp/libtorch/glibc:\n" + string.Join("\n", missing));
    }

    [Fact]
    public void A_symbol_that_is_not_exported_is_reported_missing()
    {
        var checks = InteropChecks.NativeSymbols(typeof(Imports), "test", "nothing").ToList();
        Assert.Equal([("mallopt in libc", true), ("peftsharp_no_such_symbol in libc", false)], checks.Select(c => (c.Needs, c.Present)).Order());
    }

    static class Imports
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")]
        public static extern int Present(int parameter, int value);

        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "peftsharp_no_such_symbol")]
        public static extern int Missing();
    }
}
