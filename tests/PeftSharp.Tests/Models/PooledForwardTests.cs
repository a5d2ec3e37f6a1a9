using PeftSharp.Models;
using PeftSharp.Tests.Tuners;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Models;

/// <summary>The class-token-only last block (forward's pooledOnly path) gives the full run's logits and gradients.</summary>
public class PooledForwardTests
{
    public static IEnumerable<object[]> Methods() => TunerRegistry.All.Select(m => new object[] { m.Id });

    [Theory]
    [MemberData(nameof(Methods))]
    public void Class_token_only_last_block_matches_the_full_forward_and_backward(string method)
    {
        manual_seed(21);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method);
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
        foreach (var (name, grad) in full.Grads)
            TensorAssert.RelativeNorm(grad, pooled.Grads[name], 1e-4, $"{method} grad {name}");
    }

    [Theory]
    [InlineData("lora", true)]
    [InlineData("adapter-houlsby", true)]
    [InlineData("repadapter", true)]
    [InlineData("difffit", true)]
    [InlineData("prefix", true)]
    [InlineData("convpass", false)]   // convolves over the patch grid
    [InlineData("vpt-deep", false)]   // removes its prompts at the block output
    public void The_last_block_computes_the_class_token_alone_only_where_its_tuners_allow(string method, bool alone)
    {
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, method);
        var last = model.blocks[model.Config.Depth - 1];
        Assert.Equal(alone, last.TokenSubsetExact);
        using var noGrad = no_grad();
        model.eval();
        var (x, _) = TunerTestKit.Batch(size: 2);
        var tokens = model.ForwardFeatures(x, out _, 0, model.Config.Depth, pooledOnly: true);
        Assert.Equal(alone ? 1 : model.Config.NumPrefixTokens + model.Config.NumPatches, tokens.shape[1]);
    }
}
