using PeftSharp.Checkpoints;
using PeftSharp.Cli;
using PeftSharp.Models;

namespace PeftSharp.Tests.Cli;

public class PretrainAndNormalizationOptionTests
{
    static string Normalization(params string[] args)
    {
        var line = new CommandLine("train", args, SharedOptions.Flags);
        return SharedOptions.Train(line, SharedOptions.Backbone(line)).Normalization;
    }

    [Fact]
    public void A_checkpoint_that_records_its_normalization_sets_the_default_and_an_explicit_option_wins()
    {
        string dir = TestFiles.TempDir("peftsharp-norm");
        try
        {
            string recorded = Path.Combine(dir, "recorded.safetensors");
            using (var model = new VisionTransformer(new VitConfig { ImgSize = 16, PatchSize = 8, EmbedDim = 16, Depth = 1, NumHeads = 2 }))
                ModelCheckpoints.SaveVit(recorded, model, new Dictionary<string, string> { [ModelCheckpoints.NormalizationKey] = "inception" });

            Assert.Equal("inception", Normalization("--checkpoint", recorded));
            Assert.Equal("imagenet", Normalization("--checkpoint", recorded, "--normalization", "imagenet"));
            Assert.Equal("none", Normalization("--checkpoint", TestFiles.VitCheckpoint));   // records none
            Assert.Equal("none", Normalization("--model", "vit_tiny_patch4_32"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("--curriculum", "1.5", "--curriculum must be in [0, 1]")]
    [InlineData("--start-classes", "0", "--start-classes >= 1")]
    [InlineData("--steps", "0", "--steps and --batch-size must be >= 1")]
    [InlineData("--photo-fraction", "1", "--photo-fraction must be in [0, 1)")]
    [InlineData("--photo-dir", "/nonexistent/pictures", "/nonexistent/pictures: picture folder not found")]
    public void Pretrain_rejects_bad_options_with_one_line(string option, string value, string expected)
    {
        var r = CliRunner.Run("pretrain", option, value, "--out", Path.Combine(TestFiles.TempDir(), "x.safetensors"));
        CliRunner.AssertOneLineError(r, expected);
    }
}
