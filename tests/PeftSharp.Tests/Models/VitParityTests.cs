using PeftSharp.Checkpoints;
using PeftSharp.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Models;

/// <summary>Our ViT against the outputs and gradients timm 1.0.28 produced for the same weights and input.</summary>
public class VitParityTests
{
    static readonly string[] TimmKeyOrder =
    {
        "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.norm2.weight", "blocks.0.norm2.bias",
        "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias",
    };

    [Fact]
    public void State_dict_keys_are_timms_in_timms_order()
    {
        var loaded = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint);
        Assert.True(loaded.Report.IsStrictMatch, loaded.Report.Describe());
        Assert.Equal(KeyConvention.Timm, loaded.Convention);
        Assert.Equal("metadata", loaded.ConfigSource);
        var keys = StateDictLoader.StateDict(loaded.Model).Keys.ToList();
        Assert.Equal(32, keys.Count);
        Assert.Equal(TimmKeyOrder, keys.Take(TimmKeyOrder.Length));
        Assert.Equal(new[] { "norm.weight", "norm.bias", "head.weight", "head.bias" }, keys.TakeLast(4));
    }

    [Fact]
    public void Forward_matches_timm_tokens_pre_logits_and_logits()
    {
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        model.eval();
        var io = SafeTensors.Load(TestFiles.VitIo);
        using var _ = no_grad();
        var tokens = model.ForwardFeatures(io["input"], out var layout);
        var pre = model.ForwardHead(tokens, layout, preLogits: true);
        var logits = model.forward(io["input"]);
        TensorAssert.Close(io["tokens"], tokens, what: "tokens");
        TensorAssert.Close(io["pre_logits"], pre, what: "pre_logits");
        TensorAssert.Close(io["logits"], logits, what: "logits");
    }

    [Fact]
    public void Loss_and_gradients_match_timm()
    {
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        model.eval();
        var io = SafeTensors.Load(TestFiles.VitIo);
        var loss = F.cross_entropy(model.forward(io["input"]), io["labels"]);
        loss.backward();
        TensorAssert.Close(io["loss"], loss, atol: 1e-5, rtol: 1e-5, what: "loss");
        var qkvWeight = model.blocks[0].attn.qkv.parameters().First();
        TensorAssert.RelativeNorm(io["grad_qkv0"], qkvWeight.grad!, 1e-4, "grad blocks.0.attn.qkv.weight");
        TensorAssert.Close(io["grad_qkv0"], qkvWeight.grad!, atol: 1e-6, rtol: 1e-4, what: "grad qkv elementwise");
        var head = (TorchSharp.Modules.Linear)model.head;
        TensorAssert.RelativeNorm(io["grad_head"], head.weight!.grad!, 1e-4, "grad head.weight");
        TensorAssert.RelativeNorm(io["grad_head_bias"], head.bias!.grad!, 1e-4, "grad head.bias");
    }

    [Fact]
    public void Saved_model_reloads_with_identical_keys_and_outputs()
    {
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        model.eval();
        string path = Path.Combine(TestFiles.TempDir(), "resaved.safetensors");
        ModelCheckpoints.SaveVit(path, model);
        using var again = ModelCheckpoints.LoadVit(path).Model;
        again.eval();
        var x = SafeTensors.Load(TestFiles.VitIo)["input"];
        using var _ = no_grad();
        TensorAssert.Identical(model.forward(x), again.forward(x), "reloaded logits");
    }
}
