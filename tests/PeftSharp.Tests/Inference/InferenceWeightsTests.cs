using PeftSharp.Inference;
using PeftSharp.Interop;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Inference;

public class InferenceWeightsTests
{
    static Tensor Logits(VisionTransformer vit, Tensor images, bool castOnce)
    {
        using var _ = inference_mode();
        using var products = Autocast.Enter(Precision.BFloat16, CPU);
        using var weights = InferenceWeights.CastOnce(castOnce ? vit : null, Precision.BFloat16);
        return vit.forward(images).to(float32);
    }

    [Fact]
    public void Layers_cast_once_give_autocasts_logits_bit_for_bit_and_the_model_is_unchanged_after()
    {
        manual_seed(5);
        var vit = new VisionTransformer(VitPresets.Get("vit_tiny_patch4_32") with { Depth = 2, NumClasses = 7 });
        var peft = PeftModel.Create(vit, "lora");   // qkv wrapped: its base is left to autocast, the rest cast once
        foreach (var p in peft.TrainableParameters()) using (no_grad()) p.Parameter.normal_(0, 0.05);
        vit.eval();
        using var images = randn(3, 3, 32, 32);
        var stateBefore = vit.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var modulesBefore = vit.named_modules().Select(m => (m.name, m.module)).ToList();

        using var autocastOnly = Logits(vit, images, castOnce: false);
        using (var _ = inference_mode())
        using (Autocast.Enter(Precision.BFloat16, CPU))
        using (InferenceWeights.CastOnce(vit, Precision.BFloat16))
            Assert.IsNotType<Linear>(vit.blocks[0].attn.proj);   // the scope did swap the layer the forward reads
        using var castOnce = Logits(vit, images, castOnce: true);
        TensorAssert.Identical(autocastOnly, castOnce, "logits");

        Assert.IsType<Linear>(vit.blocks[0].attn.proj);
        Assert.Equal(modulesBefore, vit.named_modules().Select(m => (m.name, m.module)).ToList());
        foreach (var (key, value) in vit.state_dict())
        {
            Assert.Equal(ScalarType.Float32, value.dtype);
            TensorAssert.Identical(stateBefore[key], value, key);
        }

        // Merged: every layer is plain and cast once; still autocast's logits exactly.
        peft.MergeAndUnload();
        using var mergedAutocast = Logits(vit, images, castOnce: false);
        using var mergedCastOnce = Logits(vit, images, castOnce: true);
        TensorAssert.Identical(mergedAutocast, mergedCastOnce, "merged logits");
    }

    [Fact]
    public void Float32_casts_nothing()
    {
        var vit = new VisionTransformer(VitPresets.Get("vit_tiny_patch4_32") with { Depth = 1, NumClasses = 3 });
        using (InferenceWeights.CastOnce(vit, Precision.Float32))
            Assert.IsType<Linear>(vit.blocks[0].attn.proj);
    }
}
