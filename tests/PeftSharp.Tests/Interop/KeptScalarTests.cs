using PeftSharp.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Interop;

public sealed class KeptScalarTests
{
    [Fact]
    public void Each_operation_gives_the_implicit_scalar_calls_result_bit_for_bit()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var x = randn(new long[] { 4, 3, 9, 9 }, generator: g) * 300;
        TensorAssert.Identical(x.div(255f), KeptScalar.Div(x, 255f));
        TensorAssert.Identical(x.clone().div_(255f), KeptScalar.Div_(x.clone(), 255f));
        TensorAssert.Identical(x.clone().mul_(255f), KeptScalar.Mul_(x.clone(), 255f));
        TensorAssert.Identical(x.clone().clamp_(0f, 1f), KeptScalar.Clamp_(x.clone(), 0, 1));
    }

    /// <summary>The race they exist for: threads computing with scalars while another thread collects and runs
    /// finalizers. With implicit scalars in these four calls this test saw libtorch errors ("Unknown scalar type", a
    /// failed toDouble check) in 4 of 5 runs (none with these in 5); an error here means a scalar was freed under a native call.</summary>
    [Fact]
    public void Threads_computing_beside_collections_never_lose_their_scalars()
    {
        var until = DateTime.UtcNow.AddSeconds(3);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long operations = 0;
        var collector = new Thread(() =>
        {
            while (DateTime.UtcNow < until)
            {
                GC.Collect(0, GCCollectionMode.Forced, blocking: true);
                GC.WaitForPendingFinalizers();
            }
        });
        var workers = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            using var x = full(new long[] { 3, 8, 8 }, 510f);
            for (long i = 0; DateTime.UtcNow < until; i++)
            {
                try
                {
                    using var scope = NewDisposeScope();
                    var y = KeptScalar.Div(x, 255f);   // 2
                    KeptScalar.Mul_(y, 255f);          // 510
                    KeptScalar.Div_(y, 255f);          // 2
                    KeptScalar.Clamp_(y, 0, 1);        // 1
                    if (i % 256 == 0 && (y.min().item<float>() != 1f || y.max().item<float>() != 1f)) errors.Enqueue("wrong value");
                    Interlocked.Add(ref operations, 4);
                }
                catch (Exception e)
                {
                    errors.Enqueue($"{e.GetType().Name}: {e.Message.Split('\n')[0]}");
                }
            }
        })).ToList();
        collector.Start();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        collector.Join();
        Assert.True(errors.IsEmpty, $"{errors.Count} errors in {operations} operations, first: {errors.FirstOrDefault()}");
        Assert.True(operations > 1000, $"only {operations} operations ran");
    }
}
