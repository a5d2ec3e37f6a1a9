using PeftSharp.Checkpoints;
using PeftSharp.Tests.Cli;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Video;

/// <summary>VideoMAE's .pth checkpoints (torch.save files made from the safetensors fixture by
/// scripts/make_videomae_pth.py with PyTorch 1.13) load to the same model as the safetensors fixture.</summary>
public class VideoMaePthTests
{
    static string Safetensors => TestFiles.Data("videomae_tiny.safetensors");
    static Dictionary<string, Tensor> Io => SafeTensors.Load(TestFiles.Data("videomae_tiny_io.safetensors"));

    [Fact]
    public void Fine_tuning_pth_gives_the_safetensors_fixtures_logits_with_the_architecture_inferred()
    {
        string pth = TestFiles.Data("videomae_tiny.pth");
        var expected = VideoCheckpoints.ReadConfig(Safetensors);
        // Inferred from the tensors (embed_dim, depth, heads of 64 → 1 head for a 64-wide model, tubelet, patch) and
        // the checkpoint's args (input_size 32, num_frames 4): the fixture was made with 4 heads, so give those.
        var inferred = VideoCheckpoints.ReadConfig(pth);
        Assert.Equal((32, 4, 2, 8, 64, 2, 1, 7, 4.0, true), (inferred.ImgSize, inferred.NumFrames, inferred.TubeletSize, inferred.PatchSize, inferred.EmbedDim,
                                                          inferred.Depth, inferred.NumHeads, inferred.NumClasses, inferred.MlpRatio, inferred.UseMeanPooling));
        var loaded = VideoCheckpoints.LoadVideoMae(pth, inferred with { NumHeads = expected.NumHeads });
        Assert.True(loaded.Report.IsStrictMatch, loaded.Report.Describe());
        using var model = loaded.Model;
        model.eval();
        var io = Io;
        using var _ = no_grad();
        TensorAssert.Close(io["logits"], model.forward(io["input"]), atol: 1e-5, what: "logits from the .pth");
        using var reference = VideoCheckpoints.LoadVideoMae(Safetensors).Model;
        reference.eval();
        Assert.Equal(0, (model.forward(io["input"]) - reference.forward(io["input"])).abs().max().item<float>());   // the same weights, bit for bit
    }

    [Fact]
    public void Pretraining_pth_loads_its_encoder_and_drops_the_decoder()
    {
        string pth = TestFiles.Data("videomae_tiny_pretrain.pth");
        var contents = VideoMaePth.Read(pth);
        Assert.True(contents.Pretraining);
        Assert.Equal(new[] { "decoder.head.bias", "decoder.head.weight", "decoder.norm.bias", "decoder.norm.weight", "encoder.norm.bias", "encoder.norm.weight", "encoder_to_decoder.weight", "mask_token" },
                     contents.Dropped.Order(StringComparer.Ordinal));
        var config = VideoCheckpoints.ReadConfig(Safetensors) with { NumClasses = 0 };
        var loaded = VideoCheckpoints.LoadVideoMae(pth, config with { });
        Assert.Equal(new[] { "fc_norm.bias", "fc_norm.weight" }, loaded.Report.Missing.Order(StringComparer.Ordinal));
        using var model = loaded.Model;
        using var reference = VideoCheckpoints.LoadVideoMae(Safetensors).Model;
        model.eval();
        reference.eval();
        var io = Io;
        using var noGrad = no_grad();
        // The blocks are the fine-tuned model's: the tokens after the last block match the fixture's.
        TensorAssert.Close(io["tokens"], model.ForwardFeatures(io["input"], out _), atol: 1e-5, what: "tokens from the pretraining .pth");
    }

    [Fact]
    public void Unknown_keys_are_an_error_naming_them_and_convert_writes_a_loadable_safetensors()
    {
        string unknown = TestFiles.Data("videomae_tiny_unknown.pth");
        var e = Assert.Throws<PeftSharpException>(() => VideoCheckpoints.LoadVideoMae(unknown, VideoCheckpoints.ReadConfig(unknown, 32, 4)));
        Assert.Equal(1, VideoCheckpoints.ReadConfig(unknown, 32, 4).Depth);
        Assert.StartsWith($"{unknown}: checkpoint does not match the model: missing keys: ", e.Message);
        Assert.Contains("unexpected keys: blocks.0.attn.relative_position_bias_table", e.Message);

        string output = Path.Combine(TestFiles.TempDir(), "converted.safetensors");
        var r = CliRunner.Run("convert", "--videomae", TestFiles.Data("videomae_tiny.pth"), "--out", output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("embed_dim 64, depth 2, 1 heads, 4 frames of 32 px in tubelets of 2, 7 classes", r.Stdout);
        Assert.Equal(1, VideoCheckpoints.ReadConfig(output).NumHeads);
        var bad = CliRunner.Run("convert", "--videomae", unknown, "--out", output);
        CliRunner.AssertOneLineError(bad, "no training 'args' with input_size");
        Assert.Equal(2, bad.ExitCode);
    }
}
