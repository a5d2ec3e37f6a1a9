using PeftSharp.Build;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests;

public class TorchSharpLoadTests
{
    [Fact]
    public void TorchSharp_loads_and_runs_forward_and_backward()
    {
        var w = randn(4, 3, requires_grad: true);
        var x = ones(2, 4);
        var loss = x.matmul(w).pow(2).sum();
        loss.backward();
        // d/dw sum((x w)^2) = 2 xᵀ (x w)
        var expected = x.t().matmul(x.matmul(w.detach())) * 2;
        Assert.True(w.grad!.allclose(expected, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void Output_copy_of_libLibTorchSharp_marks_GLIBCXX_3_4_32_weak_only_where_needed()
    {
        string lib = Directory.EnumerateFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories).First();
        byte[] data = File.ReadAllBytes(lib);
        string? system = ElfVersionNeeds.FindSystemLibStdCxx();
        bool systemHasIt = system != null && ElfVersionNeeds.FileMentionsVersion(system, "GLIBCXX_3.4.32");
        var status = ElfVersionNeeds.MarkWeak(data, "GLIBCXX_3.4.32");
        // Where the system lacks the version, the build must already have marked it; MarkWeak then finds it weak.
        if (!systemHasIt) Assert.Equal(VersionNeedPatch.AlreadyWeak, status);
        // Marking is idempotent.
        Assert.NotEqual(VersionNeedPatch.Patched, ElfVersionNeeds.MarkWeak(data, "GLIBCXX_3.4.32"));
    }

    [Fact]
    public void MarkWeak_rejects_non_elf_input()
    {
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.MarkWeak(new byte[128], "GLIBCXX_3.4.32"));
    }
}
