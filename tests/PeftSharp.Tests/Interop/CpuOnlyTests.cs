using PeftSharp.Interop;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Interop;

/// <summary>The CPU-only helpers decide from the device and step aside elsewhere: checked with CUDA and MPS device
/// types (no GPU here), and run on meta tensors (shapes without storage, on no CPU), where a helper that wrote through
/// a CPU data pointer would fail.</summary>
public class CpuOnlyTests
{
    [Fact]
    public void Every_cpu_only_helper_applies_on_the_cpu_and_is_bypassed_elsewhere()
    {
        Assert.Equal(5, CpuOnly.All.Count);
        foreach (var (helper, applies) in CpuOnly.All)
        {
            Assert.True(applies(DeviceType.CPU), helper);
            Assert.False(applies(DeviceType.CUDA), helper);
            Assert.False(applies(DeviceType.MPS), helper);
            Assert.False(applies(DeviceType.META), helper);
        }
    }

    [Fact]
    public void The_heap_helpers_measure_and_collect_on_the_cpu_only()
    {
        Assert.NotNull(NativeHeap.AllocatedBytes(DeviceType.CPU));
        Assert.Null(NativeHeap.AllocatedBytes(DeviceType.CUDA));
        using (var gpuStep = NativeHeap.StepScope(DeviceType.CUDA)) Assert.IsType<DisposeScope>(gpuStep);
        using (var cpuStep = NativeHeap.StepScope(DeviceType.CPU)) Assert.IsNotType<DisposeScope>(cpuStep);
    }

    [Fact]
    public void Dropout_and_lora_run_libtorchs_own_path_on_another_device()
    {
        var meta = device("meta");
        using var x = empty(4, 6, 8, device: meta);
        var dropout = new ParallelDropout(0.5);
        dropout.train();
        using var dropped = dropout.forward(x);   // the vectorised masks would write through a CPU pointer
        Assert.Equal(DeviceType.META, dropped.device_type);
        Assert.Equal(x.shape, dropped.shape);

        var linear = nn.Linear(8, 12);
        linear.weight!.requires_grad = false;
        linear.bias!.requires_grad = false;
        using var rows = x.reshape(-1, 8);
        Assert.True(LowRankUpdate.Fusable(linear, empty(2, 8)));   // the same layer on CPU rows takes the fused node
        Assert.False(LowRankUpdate.Fusable(linear, rows));

        var lora = new LoraLinear(linear, 2, 1.0, 0.1, null, dora: false);
        lora.to(meta);
        lora.train();
        using var y = lora.forward(x);
        Assert.Equal(DeviceType.META, y.device_type);
        Assert.Equal(new long[] { 4, 6, 12 }, y.shape);
    }
}
