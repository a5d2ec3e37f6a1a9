using PeftSharp.Interop;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

public class NativeHeapTests
{
    [Fact]
    public void The_native_heap_settings_apply_and_its_allocated_bytes_read_under_glibc()
    {
        Assert.True(NativeHeap.KeepFreedBuffers());
        Assert.True(NativeHeap.AllocatedBytes() > 0);
    }

    [Fact]
    public void A_step_scope_frees_the_native_scalars_its_operations_leave_to_the_finalizer()
    {
        using var x = zeros(16);
        // Native heap bytes still allocated after 20 steps of 1000 operations with a scalar argument each.
        long LeftBy(Func<IDisposable> stepScope)
        {
            NativeHeap.CollectStepGarbage();
            long before = NativeHeap.AllocatedBytes()!.Value;
            for (int step = 0; step < 20; step++)
                using (stepScope())
                    for (int i = 0; i < 1000; i++) x.mul_(0.5);
            return NativeHeap.AllocatedBytes()!.Value - before;
        }
        LeftBy(() => NativeHeap.StepScope());   // the runtime's own tables grow once to hold a step's finalizable objects
        long plain = LeftBy(() => NewDisposeScope());
        long collected = LeftBy(() => NativeHeap.StepScope());
        // If TorchSharp stops leaving its scalars to the finalizer, the first check fails and the collection can go.
        Assert.True(plain > 20_000 * 32, $"a plain dispose scope left {plain} bytes for 20000 scalars");
        Assert.True(collected < plain / 10, $"the step scope left {collected} bytes, a plain scope {plain}");
    }
}
