using PeftSharp.Interop;
using PeftSharp.Tuners;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>The fused low-rank nodes give the outputs and gradients autograd gives on the same formula, written out
/// here op by op; and the low-rank methods in training mode agree with their merged models.</summary>
public class LowRankUpdateTests
{
    const int Rows = 10;

    static Linear FrozenLinear(int inFeatures, int outFeatures)
    {
        var linear = nn.Linear(inFeatures, outFeatures);
        foreach (var p in linear.parameters()) p.requires_grad_(false);
        return linear;
    }

    static Tensor Leaf(params long[] shape) => randn(shape).requires_grad_(true);

    /// <summary>Backpropagates Σ y ⊙ G (G fixed) and returns the gradients of <paramref name="inputs"/> (null where none).</summary>
    static Tensor?[] Gradients(Tensor y, Tensor weights, params Tensor[] inputs)
    {
        foreach (var t in inputs) t.grad = null;
        (y * weights).sum().backward();
        return inputs.Select(t => t.grad?.clone()).ToArray();
    }

    static void AssertSame(Tensor expected, Tensor actual, Tensor?[] expectedGrads, Tensor?[] actualGrads, string what, double gradientAtol = 1e-5)
    {
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-5, what: $"{what} output");
        for (int i = 0; i < expectedGrads.Length; i++)
        {
            Assert.Equal(expectedGrads[i] is null, actualGrads[i] is null);
            if (expectedGrads[i] is Tensor e) TensorAssert.Close(e, actualGrads[i]!, atol: gradientAtol, rtol: 1e-5, what: $"{what} gradient {i}");
        }
    }

    [Theory]
    [InlineData(Rows)]
    [InlineData(4096)]   // enough rows for the per-thread slices of the tall products (∂A, ∂B)
    public void Folded_update_matches_autograd(int n)
    {
        manual_seed(1);
        var linear = FrozenLinear(6, 9);
        var (rows, down, up, g) = (Leaf(n, 6), Leaf(2, 6), Leaf(9, 2), randn(n, 9));
        var expected = F.linear(rows, linear.weight!, linear.bias) + 0.5 * F.linear(F.linear(rows, down), up);
        var expectedGrads = Gradients(expected, g, rows, down, up);
        var actual = LowRankUpdate.Folded(rows, linear, down, up, 0.5);
        AssertSame(expected, actual, expectedGrads, Gradients(actual, g, rows, down, up), "folded");
    }

    [Theory]
    [InlineData(Rows)]
    [InlineData(2048)]
    public void Chunked_update_matches_autograd(int n)
    {
        manual_seed(2);
        var linear = FrozenLinear(6, 9);
        // Three chunks of rank 2: chunk j of each row of t maps through up into columns 3j..3j+2 of the output.
        var (rows, t, up, g) = (Leaf(n, 6), Leaf(n, 6), Leaf(3, 2), randn(n, 9));
        var expected = F.linear(rows, linear.weight!, linear.bias) + 2.0 * t.view(n * 3, 2).matmul(up.t()).view(n, 9);
        var expectedGrads = Gradients(expected, g, rows, t, up);
        var actual = LowRankUpdate.AddUp(rows, linear, t, up, 2.0);
        AssertSame(expected, actual, expectedGrads, Gradients(actual, g, rows, t, up), "chunked");
    }

    [Theory]
    [InlineData(0.0, true, Rows)]
    [InlineData(0.5, true, Rows)]
    [InlineData(0.5, false, Rows)]
    [InlineData(0.5, true, 2048)]   // enough rows for the per-thread slices of the tall products (∂u, ∂v)
    public void Factored_update_matches_autograd(double dropout, bool rowsNeedGrad, int rows)
    {
        manual_seed(3);
        // FacT's fc2 and qkv shapes at once: two input chunks of width 4, three output chunks of width 3, d = 2.
        var linear = FrozenLinear(8, 9);
        var (x, down, core, up, g) = (randn(rows, 8).requires_grad_(rowsNeedGrad), Leaf(2, 4), Leaf(4, 6), Leaf(3, 2), randn(rows, 9));
        manual_seed(7);
        var lowOut = (x.view(rows * 2, 4).matmul(down.t()).view(rows, 4)).matmul(core);
        if (dropout > 0) lowOut = lowOut * ParallelDropout.Mask(lowOut.shape, dropout);
        var expected = F.linear(x, linear.weight!, linear.bias) + 0.3 * lowOut.view(rows * 3, 2).matmul(up.t()).view(rows, 9);
        var expectedGrads = Gradients(expected, g, x, down, core, up);
        manual_seed(7);
        var actual = LowRankUpdate.Factored(x, linear, down, core, dropout, up, 0.3);
        AssertSame(expected, actual, expectedGrads, Gradients(actual, g, x, down, core, up), $"factored p={dropout} rows={rows}");
    }

    [Theory]
    [InlineData(0.0, Rows)]
    [InlineData(0.5, 2048)]
    public void Factored_update_with_the_core_in_down_matches_autograd(double dropout, int rows)
    {
        manual_seed(4);
        // down already holds the core: two output chunks of width 3, d = 2, so down is [2·2, in].
        var linear = FrozenLinear(8, 6);
        var (x, down, up, g) = (Leaf(rows, 8), Leaf(4, 8), Leaf(3, 2), randn(rows, 6));
        manual_seed(7);
        var lowOut = x.matmul(down.t());
        if (dropout > 0) lowOut = lowOut * ParallelDropout.Mask(lowOut.shape, dropout);
        var expected = F.linear(x, linear.weight!, linear.bias) + 0.3 * lowOut.view(rows * 2, 2).matmul(up.t()).view(rows, 6);
        var expectedGrads = Gradients(expected, g, x, down, up);
        manual_seed(7);
        var actual = LowRankUpdate.Factored(x, linear, down, null, dropout, up, 0.3);
        AssertSame(expected, actual, expectedGrads, Gradients(actual, g, x, down, up), $"factored, core in down, p={dropout} rows={rows}");
    }

    [Theory]
    [InlineData(true, Rows)]
    [InlineData(false, Rows)]
    [InlineData(true, 2048)]   // enough rows for the per-thread slices of the tall products (∂A, ∂B)
    public void Input_dropped_update_matches_autograd(bool rowsNeedGrad, int rows)
    {
        manual_seed(8);
        var linear = FrozenLinear(8, 9);
        var (x, down, up, g) = (randn(rows, 8).requires_grad_(rowsNeedGrad), Leaf(2, 8), Leaf(9, 2), randn(rows, 9));
        // LoRA with input dropout as the module did it before the node: mask, then A, then B.
        manual_seed(7);
        var dropped = x * ParallelDropout.Mask(x.shape, 0.3);
        var expected = F.linear(x, linear.weight!, linear.bias) + 0.5 * F.linear(F.linear(dropped, down), up);
        var expectedGrads = Gradients(expected, g, x, down, up);
        manual_seed(7);
        var actual = LowRankUpdate.DroppedInput(x, linear, down, up, 0.3, 0.5);
        AssertSame(expected, actual, expectedGrads, Gradients(actual, g, x, down, up), $"input dropped rows={rows}");
    }

    [Theory]
    [InlineData(0.0, true, Rows)]
    [InlineData(0.5, true, Rows)]
    [InlineData(0.5, false, Rows)]
    [InlineData(0.5, true, 2048)]   // enough rows for the per-thread slices of the tall products (∂D, ∂U)
    [InlineData(0.0, true, 2048)]
    public void Rescaled_update_matches_autograd(double dropout, bool rowsNeedGrad, int rows)
    {
        manual_seed(6);
        var linear = FrozenLinear(8, 9);
        var (x, down, up, g) = (randn(rows, 8).requires_grad_(rowsNeedGrad), Leaf(2, 8), Leaf(9, 2), randn(rows, 9));
        var magnitude = (rand(9) + 0.5).requires_grad_(true);
        // peft's DoRA, op by op: the norm of W + s·U D is a constant, the dropped input feeds both update terms.
        var rescale = magnitude / (linear.weight! + 0.7 * up.matmul(down)).detach().pow(2).sum(1).sqrt();
        manual_seed(7);
        var dropped = dropout > 0 ? x * ParallelDropout.Mask(x.shape, dropout) : x;
        var expected = F.linear(x, linear.weight!, linear.bias) + (rescale - 1) * F.linear(dropped, linear.weight!)
                       + rescale * 0.7 * F.linear(F.linear(dropped, down), up);
        var expectedGrads = Gradients(expected, g, x, down, up, magnitude);
        manual_seed(7);
        var actual = LowRankUpdate.Rescaled(x, linear, down, up, magnitude, dropout, 0.7);
        // ∂D sums over the rows in another order than autograd's (through diag(m/‖W'‖) U first): float error grows with them.
        AssertSame(expected, actual, expectedGrads, Gradients(actual, g, x, down, up, magnitude), $"rescaled p={dropout} rows={rows}",
                   gradientAtol: rows > Rows ? 1e-4 : 1e-5);
    }

    [Fact]
    public void The_output_placeholders_of_custom_functions_can_be_released_on_this_TorchSharp() =>
        Assert.True(CustomAutograd.CanReleaseOutputPlaceholders,
                    "TorchSharp's AutogradContext/Node fields moved: custom autograd functions hold an output-sized buffer each again");

    /// <summary>In training mode with autograd on (the fused nodes) and no dropout, the tuned model computes what its
    /// merged weights compute.</summary>
    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    [InlineData("fact-tt")]
    [InlineData("fact-tk")]
    public void Training_forward_matches_the_merged_model(string method)
    {
        manual_seed(5);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method, new Dictionary<string, string> { ["dropout"] = "0" });
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 3);
        model.train();
        Tensor training;
        using (enable_grad()) training = model.forward(x).detach();
        peft.Merge();
        TensorAssert.Close(training, TunerTestKit.EvalLogits(model, x), atol: 1e-4, rtol: 1e-4, what: $"{method} training-mode vs merged");
    }

    /// <summary>Unmerged evaluation folds an update into the weight or applies it unfolded, by the rows of each product
    /// (<see cref="LowRankUpdate.FoldingPays"/>: from 150–300 rows in the test model's layers); both forms give the
    /// merged model's logits. Two images (34 rows) stay below every threshold; 128 images (2176 rows) cross them in the
    /// first block, while the last block's class-token-only layers (128 rows) stay below.</summary>
    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    [InlineData("fact-tk")]
    public void Unmerged_evaluation_matches_the_merged_model_folded_or_not(string method)
    {
        manual_seed(8);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method);
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 3);
        var (images, _) = TunerTestKit.Batch(size: 128, seed: 12);
        var unmergedMany = TunerTestKit.EvalLogits(model, images);
        var unmergedFew = TunerTestKit.EvalLogits(model, images[..2]);
        peft.Merge();
        var merged = TunerTestKit.EvalLogits(model, images);
        TensorAssert.Close(merged, unmergedMany, atol: 1e-4, rtol: 1e-4, what: $"{method}, 128 images, unmerged vs merged");
        TensorAssert.Close(merged[..2], unmergedFew, atol: 1e-4, rtol: 1e-4, what: $"{method}, 2 images, unmerged vs merged");
    }
}
