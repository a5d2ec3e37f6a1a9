using PeftSharp.Models;
using PeftSharp.Tests.Tuners;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Models;

/// <summary>The class-token-only last block (forward's pooledOnly path) gives the full run's logits and gradients.</summary>
public class PooledForwardTests
{
    public static IEnumerable<object[]> Methods() => TunerRegistry.ImageMethods.Select(m => new object[] { m.Id });

    [Theory]
    [MemberData(nameof(Methods))]
    public void Class_token_only_last_block_matches_the_full_forward_and_backward(string method)
    {
        manual_seed(21);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method, TunerTestKit.SettingsFor(method));
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 1);   // non-zero tuner weights (LoRA's B, adapters' up)
        var trainable = peft.TrainableParameters().ToList();

        // Eval mode: no dropout draws, so both runs see the same function; autograd stays on.
        model.eval();
        (Tensor Logits, Dictionary<string, Tensor> Grads) Run(bool pooledOnly)
        {
            foreach (var (_, p) in trainable) p.grad?.zero_();
            var logits = model.ForwardHead(model.ForwardFeatures(x, out var layout, 0, model.Config.Depth, pooledOnly: pooledOnly), layout);
            F.cross_entropy(logits, y).backward();
            return (logits.detach().clone(), trainable.ToDictionary(p => p.Name, p => p.Parameter.grad!.clone()));
        }
        var full = Run(pooledOnly: false);
        var pooled = Run(pooledOnly: true);

        TensorAssert.Close(full.Logits, pooled.Logits, atol: 1e-5, rtol: 1e-4, what: $"{method} logits");
        TensorAssert.Close(full.Logits, model.forward(x).detach(), atol: 1e-5, rtol: 1e-4, what: $"{method} forward");
        // A gradient that is zero but for float noise has no relative error to speak of: a bias on the keys alone
        // (SPT-Adapter's on the k section) shifts every score of a query equally, which the softmax ignores.
        foreach (var (name, grad) in full.Grads.Where(g => g.Value.norm().item<float>() > 1e-7))
            TensorAssert.RelativeNorm(grad, pooled.Grads[name], 1e-4, $"{method} grad {name}");
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("adapter-houlsby")]
    [InlineData("repadapter")]
    [InlineData("difffit")]
    [InlineData("prefix")]
    [InlineData("convpass")]   // convolves the patch grid, but the class token is a 1×1 map of its own
    [InlineData("vpt-deep")]   // its prompts sit after the class token and leave at the block output
    [InlineData("dtl")]        // the side path's sum is cut to the class token with the block
    [InlineData("adapter-plus")]
    [InlineData("hydra")]
    [InlineData("mona")]       // the class token is a 1×1 map of its own, as in ConvPass
    public void The_last_block_computes_the_class_token_alone(string method)
    {
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, method);
        Assert.True(model.blocks[model.Config.Depth - 1].PrefixTokensStandAlone);
        Assert.Equal(1, PooledTokens(model));
    }

    [Fact]
    public void A_tuner_that_mixes_the_class_token_with_the_others_keeps_the_last_block_whole()
    {
        using var model = TunerTestKit.Backbone();
        var last = model.blocks[model.Config.Depth - 1];
        last.Attach("mix", new TokenMixer(), InsertionPoint.MlpOutput);
        Assert.False(last.PrefixTokensStandAlone);
        Assert.Equal(model.Config.NumPrefixTokens + model.Config.NumPatches, PooledTokens(model));
    }

    static long PooledTokens(VisionTransformer model)
    {
        using var noGrad = no_grad();
        model.eval();
        var (x, _) = TunerTestKit.Batch(size: 2);
        return model.ForwardFeatures(x, out _, 0, model.Config.Depth, pooledOnly: true).shape[1];
    }

    /// <summary>Adds the mean over all tokens to each token: the class token's output depends on the patches.</summary>
    sealed class TokenMixer : BlockTuner
    {
        public TokenMixer() : base("TokenMixer") { }
        public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout) => x + x.mean(new long[] { 1 }, keepdim: true);
    }
}
