using PeftSharp.Models;
using PeftSharp.Tests.Tuners;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Models;

/// <summary>Checkpointed blocks give the same loss and gradients as the ordinary backward, in training mode with
/// dropout and drop path drawing random masks (the recomputation must replay them).</summary>
public class GradCheckpointTests
{
    [Theory]
    [InlineData("full")]
    [InlineData("lora")]              // frozen patch embedding: the first block's input needs no gradient
    [InlineData("adapter-houlsby")]   // adapter dropout
    [InlineData("vpt-deep")]          // changes the token layout inside each block
    [InlineData("fact-tt")]           // factors shared by every block
    [InlineData("ssf+lora")]
    public void Checkpointed_training_step_matches_the_ordinary_one(string method)
    {
        manual_seed(31);
        using var model = ModelWithDropPath();
        var peft = PeftModel.Create(model, method);
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 1);   // non-zero tuner weights
        var trainable = peft.TrainableParameters().ToList();

        (double Loss, Dictionary<string, Tensor> Grads) Step(bool checkpointed)
        {
            model.GradCheckpointing = checkpointed;
            model.train();
            foreach (var (_, p) in trainable) p.grad?.zero_();
            manual_seed(5);
            var loss = F.cross_entropy(model.forward(x), y);
            loss.backward();
            return (loss.item<float>(), trainable.ToDictionary(p => p.Name, p => p.Parameter.grad!.clone()));
        }
        var plain = Step(checkpointed: false);
        var checkpointed = Step(checkpointed: true);

        Assert.Equal(plain.Loss, checkpointed.Loss, 5);
        foreach (var (name, grad) in plain.Grads)
            TensorAssert.RelativeNorm(grad, checkpointed.Grads[name], 1e-4, $"{method} grad {name}");
    }

    [Fact]
    public void Checkpointing_does_not_touch_evaluation_or_the_random_stream()
    {
        manual_seed(32);
        using var model = ModelWithDropPath();
        PeftModel.Create(model, "lora");
        var (x, _) = TunerTestKit.Batch();
        var expected = TunerTestKit.EvalLogits(model, x);
        model.GradCheckpointing = true;
        TensorAssert.Identical(expected, TunerTestKit.EvalLogits(model, x), "eval logits");

        // After a checkpointed step the random stream continues where an ordinary step leaves it.
        Tensor NextDraw(bool checkpointed)
        {
            model.GradCheckpointing = checkpointed;
            model.train();
            manual_seed(9);
            model.forward(x).sum().backward();
            return rand(4);
        }
        TensorAssert.Identical(NextDraw(false), NextDraw(true), "draw after the step");
    }

    static VisionTransformer ModelWithDropPath()
    {
        var model = TunerTestKit.Backbone();
        var withDropPath = new VisionTransformer(model.Config with { DropPathRate = 0.2 });
        withDropPath.load_state_dict(model.state_dict());
        model.Dispose();
        return withDropPath;
    }
}
