using PeftSharp.Checkpoints;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Cli;

public class ForwardCommandTests
{
    [Fact]
    public void Forward_on_the_fixture_reproduces_timms_outputs()
    {
        string output = Path.Combine(TestFiles.TempDir(), "out.safetensors");
        var r = CliRunner.Run("forward", "--checkpoint", TestFiles.VitCheckpoint, "--input", TestFiles.VitIo, "--output", output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var expected = SafeTensors.Load(TestFiles.VitIo);
        var actual = SafeTensors.Load(output);
        TensorAssert.Close(expected["logits"], actual["logits"], what: "logits");
        TensorAssert.Close(expected["pre_logits"], actual["pre_logits"], what: "pre_logits");
        TensorAssert.Close(expected["tokens"], actual["tokens"], what: "tokens");
    }

    [Theory]
    [InlineData("""{"img_size": 48, "patch_size": 16, "embed_dim": 96, "depth": 3, "num_heads": 6, "num_classes": 4, "global_pool": "avg"}""")]
    [InlineData("""{"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 3, "reg_tokens": 1, "qkv_bias": false}""")]
    public void Forward_runs_other_configurations_from_metadata_and_matches_the_library(string json)
    {
        manual_seed(21);
        string dir = TestFiles.TempDir();
        var config = VitConfig.FromJson(json);
        using var model = new VisionTransformer(config);
        ModelCheckpoints.SaveVit(Path.Combine(dir, "w.safetensors"), model);
        var x = randn(2, 3, config.ImgSize, config.ImgSize);
        SafeTensors.Save(Path.Combine(dir, "io.safetensors"), new Dictionary<string, Tensor> { ["input"] = x });
        var r = CliRunner.Run("forward", "--checkpoint", Path.Combine(dir, "w.safetensors"), "--input", Path.Combine(dir, "io.safetensors"),
                              "--output", Path.Combine(dir, "out.safetensors"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        model.eval();
        using var _ = no_grad();
        TensorAssert.Close(model.forward(x), SafeTensors.Load(Path.Combine(dir, "out.safetensors"))["logits"], what: json);
    }

    [Fact]
    public void Forward_with_a_preset_and_config_override()
    {
        string dir = TestFiles.TempDir();
        var r = CliRunner.Run("forward", "--checkpoint", TestFiles.VitCheckpoint, "--input", TestFiles.VitIo, "--output", Path.Combine(dir, "o.safetensors"),
                              "--model", "vit_tiny_patch16_224", "--config", """{"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4, "num_classes": 10}""");
        Assert.True(r.ExitCode == 0, r.Stderr);
        TensorAssert.Close(SafeTensors.Load(TestFiles.VitIo)["logits"], SafeTensors.Load(Path.Combine(dir, "o.safetensors"))["logits"]);
    }

    [Fact]
    public void Missing_checkpoint_is_one_clear_line()
    {
        var r = CliRunner.Run("forward", "--checkpoint", "/nonexistent/w.safetensors", "--input", TestFiles.VitIo, "--output", "/tmp/x.safetensors");
        CliRunner.AssertOneLineError(r, "/nonexistent/w.safetensors");
    }

    [Fact]
    public void Wrong_config_is_one_clear_line()
    {
        var r = CliRunner.Run("forward", "--checkpoint", TestFiles.VitCheckpoint, "--input", TestFiles.VitIo, "--output", "/tmp/x.safetensors",
                              "--config", """{"embed_dim": 64, "depht": 2}""");
        CliRunner.AssertOneLineError(r, "unknown field 'depht'");
    }

    [Fact]
    public void Checkpoint_that_does_not_fit_the_config_names_the_mismatch()
    {
        var r = CliRunner.Run("forward", "--checkpoint", TestFiles.VitCheckpoint, "--input", TestFiles.VitIo, "--output", "/tmp/x.safetensors",
                              "--config", """{"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4, "num_classes": 10, "mlp_ratio": 2.0}""");
        CliRunner.AssertOneLineError(r, "blocks.0.mlp.fc1.weight");
    }

    [Fact]
    public void Input_of_the_wrong_image_size_is_one_clear_line()
    {
        string dir = TestFiles.TempDir();
        SafeTensors.Save(Path.Combine(dir, "io.safetensors"), new Dictionary<string, Tensor> { ["input"] = zeros(1, 3, 40, 40) });
        var r = CliRunner.Run("forward", "--checkpoint", TestFiles.VitCheckpoint, "--input", Path.Combine(dir, "io.safetensors"), "--output", Path.Combine(dir, "o.safetensors"));
        CliRunner.AssertOneLineError(r, "expected 32x32 images, got 40x40");
    }

    [Fact]
    public void Unknown_option_and_verb_are_one_clear_line()
    {
        CliRunner.AssertOneLineError(CliRunner.Run("forward", "--checkpoint", "a", "--input", "b", "--output", "c", "--bogus", "1"), "--bogus");
        CliRunner.AssertOneLineError(CliRunner.Run("frobnicate"), "unknown verb 'frobnicate'");
    }

    [Fact]
    public void Inspect_lists_tensors_metadata_and_convention()
    {
        var r = CliRunner.Run("inspect", TestFiles.VitCheckpoint);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("blocks.0.attn.qkv.weight", r.Stdout);
        Assert.Contains("192", r.Stdout);
        Assert.Contains("config", r.Stdout);
        Assert.Contains("key convention: Timm", r.Stdout);
    }
}
