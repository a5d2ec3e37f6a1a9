using PeftSharp.Interop;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Models;

public class EncoderMemoryTests
{
    /// <summary>Without autograd nothing needs a block's output once the next block has run: a forward leaves the
    /// embedding's tokens, the last block's and the final norm's allocated (5 token tensors here), not every block's
    /// until the caller's scope ends (16 before).</summary>
    [Fact]
    public void Without_autograd_the_encoder_does_not_hold_every_blocks_tokens()
    {
        using var model = new VisionTransformer(VitPresets.Get("vit_tiny_patch4_32") with { NumClasses = 10 });
        model.eval();
        using var images = randn(16, 3, 32, 32);
        long tokenBytes = 16L * 65 * 192 * sizeof(float);
        using var inference = inference_mode();
        using (NativeHeap.StepScope()) model.ForwardFeatures(images, out _);   // the libraries' own buffers, once
        using var scope = NewDisposeScope();
        NativeHeap.CollectStepGarbage();
        long before = NativeHeap.AllocatedBytes()!.Value;
        model.ForwardFeatures(images, out _);
        NativeHeap.CollectStepGarbage();
        long held = NativeHeap.AllocatedBytes()!.Value - before;
        Assert.True(held < 8 * tokenBytes, $"a forward of {model.Config.Depth} blocks holds {held / (double)tokenBytes:F1} token tensors");
    }
}
