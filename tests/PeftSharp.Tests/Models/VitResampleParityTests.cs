using PeftSharp.Checkpoints;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Models;

/// <summary>The backbone at other input sizes against timm 1.0.28 (vit_resample_io.safetensors, see the parity
/// fixtures' README): resample_abs_pos_embed, a checkpoint loaded at another img_size, dynamic_img_size and
/// forward_intermediates(output_fmt='NCHW').</summary>
public class VitResampleParityTests
{
    static Dictionary<string, Tensor> Io() => SafeTensors.Load(TestFiles.Data("vit_resample_io.safetensors"));

    [Fact]
    public void Position_table_resampling_matches_timm_bicubic_antialias()
    {
        var io = Io();
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        TensorAssert.Close(io["pos_embed_8x8"], PositionEmbedding.Resample(model.pos_embed, (8, 8), 1), atol: 1e-5, rtol: 1e-5, what: "8x8");
        TensorAssert.Close(io["pos_embed_6x6"], PositionEmbedding.Resample(model.pos_embed, (6, 6), 1), atol: 1e-5, rtol: 1e-5, what: "6x6");
    }

    [Fact]
    public void Checkpoint_loaded_at_64_px_matches_timm_tokens_logits_and_feature_maps()
    {
        var io = Io();
        var config = ModelCheckpoints.ReadVitConfig(TestFiles.VitCheckpoint) with { ImgSize = 64 };
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint, config).Model;
        model.eval();
        using var noGrad = no_grad();
        TensorAssert.Close(io["pos_embed_8x8"], model.pos_embed, atol: 1e-5, rtol: 1e-5, what: "loaded pos_embed");
        TensorAssert.Close(io["tokens_64"], model.ForwardFeatures(io["input_64"], out _), atol: 1e-4, rtol: 1e-4, what: "tokens");
        TensorAssert.Close(io["logits_64"], model.forward(io["input_64"]), atol: 1e-4, rtol: 1e-4, what: "logits");
        var maps = model.ForwardIntermediates(io["input_64"], new[] { 0, 1 });
        Assert.Equal(new long[] { 2, 64, 8, 8 }, maps[0].shape);
        TensorAssert.Close(io["intermediate_0_nchw"], maps[0], atol: 1e-4, rtol: 1e-4, what: "block 0 map");
        TensorAssert.Close(io["intermediate_1_nchw"], maps[1], atol: 1e-4, rtol: 1e-4, what: "block 1 map");
    }

    [Fact]
    public void Dynamic_img_size_resamples_on_the_fly_as_timm()
    {
        var io = Io();
        var config = ModelCheckpoints.ReadVitConfig(TestFiles.VitCheckpoint) with { DynamicImgSize = true };
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint, config).Model;
        model.eval();
        using var noGrad = no_grad();
        Assert.Equal(new long[] { 1, 17, 64 }, model.pos_embed.shape);   // the checkpoint's own 4x4 table is kept
        TensorAssert.Close(io["logits_48_dynamic"], model.forward(io["input_48"]), atol: 1e-4, rtol: 1e-4, what: "48 px logits");
    }

    [Fact]
    public void A_fixed_size_model_names_the_size_it_expects()
    {
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        var e = Assert.Throws<PeftSharpException>(() => model.forward(zeros(1, 3, 48, 48)));
        Assert.Contains("expected 32x32", e.Message);
    }

    [Fact]
    public void Intermediates_start_later_from_tokens_and_reject_indices_outside_the_blocks()
    {
        var io = Io();
        var config = ModelCheckpoints.ReadVitConfig(TestFiles.VitCheckpoint) with { ImgSize = 64 };
        using var model = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint, config).Model;
        model.eval();
        using var noGrad = no_grad();
        var tokens = model.ForwardFeatures(io["input_64"], out var layout, 0, 1, finalNorm: false);
        var maps = model.ForwardIntermediates(tokens, new[] { 1 }, false, 1, layout);
        TensorAssert.Close(io["intermediate_1_nchw"], maps[0], atol: 1e-4, rtol: 1e-4, what: "block 1 from block 1's input");
        Assert.Throws<PeftSharpException>(() => model.ForwardIntermediates(io["input_64"], new[] { 2 }));
    }
}
