using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

public class ParallelDropoutTests
{
    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    public void Drops_a_fraction_p_and_scales_the_rest_to_keep_the_mean(double p)
    {
        manual_seed(1);
        var dropout = new ParallelDropout(p);
        dropout.train();
        var x = ones(1000, 1001);   // an odd element count: the last pair is half used
        var y = dropout.forward(x);
        double dropped = y.eq(0).to(float64).mean().item<double>();
        Assert.InRange(dropped, p - 0.003, p + 0.003);
        Assert.True(y.eq(0).logical_or(y.sub(1 / (1 - p)).abs().lt(1e-6)).all().item<bool>(), "values other than 0 and 1/(1-p)");
        Assert.InRange(y.mean().item<float>(), 0.995, 1.005);
        // Neighbouring elements (the two halves of one 64-bit draw) are not correlated.
        var flat = y.eq(0).to(float64).flatten();
        double both = flat[..^1].mul(flat[1..]).mean().item<double>();
        Assert.InRange(both, p * p - 0.003, p * p + 0.003);
    }

    [Fact]
    public void Masks_follow_torchs_seed_and_differ_between_calls()
    {
        var dropout = new ParallelDropout(0.3);
        dropout.train();
        var x = randn(64, 65, 192);
        manual_seed(7);
        var first = dropout.forward(x);
        var second = dropout.forward(x);
        manual_seed(7);
        TensorAssert.Identical(first, dropout.forward(x), "same seed");
        Assert.False(first.eq(second).all().item<bool>(), "two calls drew the same mask");
    }

    [Fact]
    public void A_large_mask_drawn_in_parallel_starts_with_the_small_mask_of_the_same_seed()
    {
        manual_seed(9);
        var small = ParallelDropout.Mask(new long[] { 1001 }, 0.2);   // drawn on the calling thread
        manual_seed(9);
        var large = ParallelDropout.Mask(new long[] { 3 << 20 }, 0.2);   // drawn in chunks on .NET's pool
        TensorAssert.Identical(small, large[..1001], "the same draws by index");
        Assert.InRange(large.eq(0).to(ScalarType.Float32).mean().item<float>(), 0.199, 0.201);
    }

    [Fact]
    public void Multiplying_in_place_by_a_seeds_mask_equals_multiplying_by_the_mask_drawn_with_that_seed()
    {
        var x = randn(37, 129);   // an odd element count: the vector loop and the scalar tail
        manual_seed(3);
        var mask = ParallelDropout.Mask(x.shape, 0.25);
        manual_seed(3);
        var scaled = x.clone();
        ParallelDropout.MultiplyByMask_(scaled, ParallelDropout.DrawSeed(), 0.25);
        TensorAssert.Identical(x * mask, scaled, "in-place mask");
        Assert.Throws<ArgumentException>(() => ParallelDropout.MultiplyByMask_(x.t(), 1, 0.25));
    }

    [Fact]
    public void Forward_is_the_input_times_the_mask_drawn_with_the_same_seed_for_strided_inputs_too()
    {
        var dropout = new ParallelDropout(0.3);
        dropout.train();
        var x = randn(33, 70).t();   // strided
        manual_seed(5);
        var y = dropout.forward(x);
        manual_seed(5);
        TensorAssert.Identical(x * ParallelDropout.Mask(x.shape, 0.3), y, "seeded dropout");
    }

    [Fact]
    public void Gradient_is_the_mask_eval_is_identity_and_bf16_stays_bf16()
    {
        var dropout = new ParallelDropout(0.2);
        dropout.train();
        var x = randn(16, 40).requires_grad_();
        var y = dropout.forward(x);
        y.sum().backward();
        TensorAssert.Close(y.detach().div(x.detach()), x.grad!, atol: 1e-5, what: "gradient");

        dropout.eval();
        Assert.Same(x, dropout.forward(x));

        dropout.train();
        var half = randn(8, 8).to(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, dropout.forward(half).dtype);
    }
}
