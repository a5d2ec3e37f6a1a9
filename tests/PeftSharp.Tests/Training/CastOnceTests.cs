using PeftSharp.Interop;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

public class CastOnceTests
{
    static Tensor Logits(VisionTransformer vit, Tensor images, bool castOnce)
    {
        using var _ = inference_mode();
        using var products = Autocast.Enter(Precision.BFloat16, CPU);
        using var weights = CastOnce.Inference(castOnce ? vit : null, Precision.BFloat16);
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
        using (CastOnce.Inference(vit, Precision.BFloat16))
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
        using (CastOnce.Inference(vit, Precision.Float32))
            Assert.IsType<Linear>(vit.blocks[0].attn.proj);
    }

    /// <summary>Gradients of the trainable tensors after one bf16 forward and backward, with the frozen layers cast once
    /// or left to autocast.</summary>
    static Dictionary<string, Tensor> Gradients(PeftModel peft, VisionTransformer vit, Tensor images, Tensor labels, bool castOnce)
    {
        foreach (var p in peft.TrainableParameters()) p.Parameter.grad?.zero_();
        manual_seed(3);   // the same dropout masks in both passes
        using (castOnce ? CastOnce.FrozenLayers(vit, Precision.BFloat16) : CastOnce.Inference(null, Precision.BFloat16))
        {
            Tensor loss;
            using (Autocast.Enter(Precision.BFloat16, CPU)) loss = TorchSharp.torch.nn.functional.cross_entropy(vit.forward(images).to(float32), labels);
            loss.backward();
        }
        return peft.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad!.clone());
    }

    [Theory]
    [InlineData("lora", true)]      // blocks.0.attn.proj is frozen: cast once
    [InlineData("bitfit", false)]   // its bias trains: left to autocast
    public void Frozen_layers_cast_once_give_autocasts_gradients_bit_for_bit(string method, bool cast)
    {
        manual_seed(9);
        var vit = new VisionTransformer(VitPresets.Get("vit_tiny_patch4_32") with { Depth = 2, NumClasses = 5, DropPathRate = 0 });
        var peft = PeftModel.Create(vit, method);
        foreach (var p in peft.TrainableParameters()) using (no_grad()) p.Parameter.add_(randn_like(p.Parameter) * 0.05);
        vit.train();
        using var images = randn(4, 3, 32, 32);
        using var labels = tensor(new long[] { 0, 1, 2, 3 });
        using (CastOnce.FrozenLayers(vit, Precision.BFloat16))
            Assert.Equal(cast, vit.blocks[0].attn.proj is not Linear);   // the field the forward reads (the registry keeps the layer)
        var autocast = Gradients(peft, vit, images, labels, castOnce: false);
        var castOnce = Gradients(peft, vit, images, labels, castOnce: true);
        Assert.NotEmpty(autocast);
        foreach (var (name, grad) in autocast) TensorAssert.Identical(grad, castOnce[name], name);
        Assert.IsType<Linear>(vit.blocks[0].attn.proj);
    }
}
