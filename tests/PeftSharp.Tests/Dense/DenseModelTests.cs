using PeftSharp.Checkpoints;
using PeftSharp.Dense;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Dense;

/// <summary>The dense model on the timm fixture backbone at 64 px: shapes, a frozen prefix that gives the same maps,
/// and a merged method that predicts as the unmerged one.</summary>
public class DenseModelTests
{
    static VisionTransformer Backbone() =>
        ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint, ModelCheckpoints.ReadVitConfig(TestFiles.VitCheckpoint) with { ImgSize = 64, NumClasses = 0 }, strict: false).Model;

    [Theory]
    [InlineData("linear")]
    [InlineData("uper")]
    public void Segmentation_logits_are_finite_at_the_input_size(string head)
    {
        manual_seed(1);
        using var model = new DenseModel(Backbone(), DenseKind.Segmentation, 5, head);
        model.eval();
        using var noGrad = no_grad();
        var logits = model.SegmentationLogits(rand(2, 3, 64, 64));
        Assert.Equal(new long[] { 2, 5, 64, 64 }, logits.shape);
        Assert.True(logits.isfinite().all().item<bool>());
    }

    [Fact]
    public void Detection_outputs_cover_three_levels_and_a_frozen_prefix_changes_nothing()
    {
        manual_seed(1);
        using var model = new DenseModel(Backbone(), DenseKind.Detection, 3);
        model.eval();
        using var noGrad = no_grad();
        var x = rand(2, 3, 64, 64);
        var outputs = model.DetectionOutputs(x);
        Assert.Equal(16 * 16 + 8 * 8 + 4 * 4, outputs.Locations.Count);
        Assert.Equal(new long[] { 2, 336, 3 }, outputs.ClassLogits.shape);
        TensorAssert.Close(model.Features(x)[0], model.Features(x, firstTrainableBlock: 1)[0], atol: 1e-6, what: "frozen block 0");
    }

    [Theory]
    [InlineData("gps")]
    [InlineData("spt-lora")]
    [InlineData("noah")]
    public void A_method_with_a_classifier_pre_pass_is_refused_in_one_line(string method)
    {
        var backbone = Backbone();
        using var model = new DenseModel(backbone, DenseKind.Segmentation, 4);
        var peft = PeftModel.Create(backbone, method, method == "spt-lora" ? new Dictionary<string, string> { ["budget"] = "5000" } : null);
        var e = Assert.Throws<PeftSharpException>(() => new DenseTrainer(model, peft, new PeftSharp.Training.TrainOptions(), CPU));
        Assert.Contains($"method '{method}': its pre-pass (", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Merged_lora_segments_exactly_as_unmerged()
    {
        manual_seed(2);
        var backbone = Backbone();
        using var model = new DenseModel(backbone, DenseKind.Segmentation, 4);
        var peft = PeftModel.Create(backbone, "lora");
        using (no_grad())
            foreach (var p in peft.TrainableParameters().Select(p => p.Parameter)) p.add_(randn_like(p) * 0.05);   // a trained-looking adapter
        model.eval();
        using var noGrad = no_grad();
        var x = rand(2, 3, 64, 64);
        var before = model.SegmentationLogits(x);
        peft.Merge();
        var merged = model.SegmentationLogits(x);
        TensorAssert.Close(before, merged, atol: 1e-4, rtol: 1e-4, what: "merged vs unmerged logits");
        Assert.True(before.argmax(1).eq(merged.argmax(1)).@float().mean().item<float>() > 0.999f);
    }
}

/// <summary>The heads' written-out layers against libtorch's own (single images, where its kernels were never wrong).</summary>
public class HeadLayerTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void MatConv2d_is_conv2d_with_same_padding(int kernel)
    {
        manual_seed(3);
        var conv = new MatConv2d(5, 7, kernel);
        var x = randn(2, 5, 6, 4);
        using var noGrad = no_grad();
        var expected = nn.functional.conv2d(x, conv.weight, conv.bias, padding: new long[] { kernel / 2, kernel / 2 });
        TensorAssert.Close(expected, conv.forward(x), atol: 1e-5, what: $"{kernel}x{kernel}");
    }

    [Fact]
    public void MatUpsample2x_is_a_stride_2_transposed_convolution()
    {
        manual_seed(4);
        var up = new MatUpsample2x(5, 3);
        var x = randn(2, 5, 3, 4);
        using var noGrad = no_grad();
        var expected = nn.functional.conv_transpose2d(x, up.weight, up.bias, strides: new long[] { 2, 2 });
        TensorAssert.Close(expected, up.forward(x), atol: 1e-5, what: "2x up");
    }

    [Fact]
    public void GroupNorm2d_is_group_norm()
    {
        manual_seed(5);
        var gn = new GroupNorm2d(2, 6);
        using (no_grad()) { gn.weight.uniform_(0.5, 1.5); gn.bias.uniform_(-1, 1); }
        var x = randn(3, 6, 4, 5);
        using var noGrad = no_grad();
        TensorAssert.Close(nn.functional.group_norm(x, 2, gn.weight, gn.bias, 1e-5), gn.forward(x), atol: 1e-5, what: "group norm");
    }
}
