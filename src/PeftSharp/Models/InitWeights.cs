using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Models;

/// <summary>timm's default ViT initialisation ('' weight_init): trunc-normal(0.02) pos_embed and Linear weights, zero
/// biases, cls/reg tokens N(0, 1e-6); LayerNorm 1/0 and the patch conv keep PyTorch's defaults.</summary>
public static class InitWeights
{
    public static void Vit(VisionTransformer model)
    {
        using var _ = no_grad();
        nn.init.trunc_normal_(model.pos_embed, std: 0.02);
        if (model.cls_token is not null) nn.init.normal_(model.cls_token, std: 1e-6);
        if (model.reg_token is not null) nn.init.normal_(model.reg_token, std: 1e-6);
        foreach (var (_, module) in model.named_modules())
            if (module is Linear linear) TimmLinear(linear);
    }

    public static void TimmLinear(Linear linear)
    {
        using var _ = no_grad();
        nn.init.trunc_normal_(linear.weight, std: 0.02);
        if (linear.bias is not null) nn.init.zeros_(linear.bias);
    }
}
