using Microsoft.ML.OnnxRuntime;
using PeftSharp.Checkpoints;
using PeftSharp.Export;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Export;

/// <summary>CLIP's towers exported to ONNX run in ONNX Runtime to our embeddings (1e-4) at any batch size; an unmerged
/// adapter and an unnamed tower are refused in one line.</summary>
public class ClipOnnxExportTests
{
    static ClipConfig Tiny(bool quickGelu) => new()
    {
        EmbedDim = 16, QuickGelu = quickGelu,
        Vision = ClipConfig.VisionTower(16, 4, 32, 2, 16, 4.0, 16, quickGelu),
        Text = new ClipTextConfig { ContextLength = 8, VocabSize = 64, Width = 32, Heads = 2, Layers = 2 },
    };

    static ClipModel Randomized(ClipConfig config)
    {
        var model = new ClipModel(config);
        manual_seed(4);
        using (no_grad()) foreach (var p in model.parameters()) p.copy_(randn_like(p) * 0.3);
        model.eval();
        return model;
    }

    static float[] Run(string path, string input, NamedOnnxValue value, string output)
    {
        using var session = new InferenceSession(path);
        Assert.Equal(-1, session.InputMetadata[input].Dimensions[0]);   // the dynamic batch axis
        using var results = session.Run([value]);
        return results.Single(r => r.Name == output).AsEnumerable<float>().ToArray();
    }

    static NamedOnnxValue Images(Tensor images) => NamedOnnxValue.CreateFromTensor(OnnxExport.InputName,
        new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(images.contiguous().data<float>().ToArray(), images.shape.Select(d => (int)d).ToArray()));

    static NamedOnnxValue Ids(Tensor ids) => NamedOnnxValue.CreateFromTensor(OnnxExport.TextInputName,
        new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>(ids.contiguous().data<long>().ToArray(), ids.shape.Select(d => (int)d).ToArray()));

    static void AssertClose(Tensor expected, float[] actual)
    {
        var e = expected.contiguous().data<float>().ToArray();
        Assert.Equal(e.Length, actual.Length);
        for (int i = 0; i < e.Length; i++) Assert.Equal(e[i], actual[i], 1e-4f);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Both_towers_compute_our_embeddings_at_any_batch_size(bool quickGelu)
    {
        string dir = TestFiles.TempDir("onnx-clip");
        try
        {
            using var model = Randomized(Tiny(quickGelu));
            string image = Path.Combine(dir, "image.onnx"), text = Path.Combine(dir, "text.onnx");
            OnnxExport.SaveClipImageTower(model, image);
            OnnxExport.SaveClipTextTower(model, text);
            foreach (int batch in new[] { 1, 3 })
            {
                using var pixels = randn(batch, 3, 16, 16);
                using (no_grad()) AssertClose(model.EncodeImage(pixels), Run(image, OnnxExport.InputName, Images(pixels), OnnxExport.ImageEmbedsName));
            }
            // Rows whose end of text (the largest id) sits at different positions, padded with 0; one row repeats its
            // largest id, where both take the first.
            using var ids = tensor(new long[,] { { 1, 5, 63, 0, 0, 0, 0, 0 }, { 2, 9, 7, 4, 11, 30, 60, 0 }, { 3, 40, 40, 1, 0, 0, 0, 0 } });
            using (no_grad()) AssertClose(model.EncodeText(ids), Run(text, OnnxExport.TextInputName, Ids(ids), OnnxExport.TextOutputName));
            using var one = ids[..1];
            using (no_grad()) AssertClose(model.EncodeText(one), Run(text, OnnxExport.TextInputName, Ids(one), OnnxExport.TextOutputName));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void An_unmerged_text_adapter_is_refused_and_its_merge_exports()
    {
        string dir = TestFiles.TempDir("onnx-clip-peft");
        try
        {
            using var model = Randomized(Tiny(true));
            var peft = PeftModel.Create(model, "lora", new Dictionary<string, string> { ["rank"] = "2" }, new PeftOptions { TrainHead = false, Towers = ["text"] });
            using (no_grad()) foreach (var (_, p) in peft.TrainableParameters()) p.copy_(randn_like(p) * 0.3);
            model.eval();   // the LoRA layers were created in training mode (dropout)
            using var ids = tensor(new long[,] { { 1, 5, 63, 0, 0, 0, 0, 0 }, { 2, 9, 7, 4, 11, 30, 60, 0 } });
            Tensor unmerged;
            using (no_grad()) unmerged = model.EncodeText(ids);
            var refused = Assert.Throws<PeftSharpException>(() => OnnxExport.SaveClipTextTower(model, Path.Combine(dir, "text.onnx")));
            Assert.Contains("merge its adapter first", refused.Message);
            Assert.DoesNotContain('\n', refused.Message);
            peft.MergeAndUnload();
            OnnxExport.SaveClipTextTower(model, Path.Combine(dir, "text.onnx"));
            AssertClose(unmerged, Run(Path.Combine(dir, "text.onnx"), OnnxExport.TextInputName, Ids(ids), OnnxExport.TextOutputName));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Export_clip_writes_each_tower_of_a_checkpoint_and_refuses_bad_requests_in_one_line()
    {
        string dir = TestFiles.TempDir("onnx-clip-cli");
        try
        {
            string checkpoint = TestFiles.ClipCheckpoint, text = Path.Combine(dir, "text.onnx"), image = Path.Combine(dir, "image.onnx");
            var r = Cli.CliRunner.Run("export", "--clip", "--tower", "text", "--checkpoint", checkpoint, "--onnx", text);
            Assert.True(r.ExitCode == 0, r.Stderr);
            r = Cli.CliRunner.Run("export", "--clip", "--tower", "image", "--checkpoint", checkpoint, "--onnx", image);
            Assert.True(r.ExitCode == 0, r.Stderr);

            using var model = ModelCheckpoints.LoadClip(checkpoint).Model;
            model.eval();
            // Ids within this small model's vocabulary, the end of text its largest.
            var t = model.Config.Text;
            using var ids = tensor(new long[,] { { 1, 2, 3, t.VocabSize - 1 }, { 4, t.VocabSize - 1, 0, 0 } });
            using var padded = nn.functional.pad(ids, [0, t.ContextLength - 4]);
            using (no_grad()) AssertClose(model.EncodeText(padded), Run(text, OnnxExport.TextInputName, Ids(padded), OnnxExport.TextOutputName));
            manual_seed(1);
            using var pixels = randn(2, 3, model.Config.Vision.ImgSize, model.Config.Vision.ImgSize);
            using (no_grad()) AssertClose(model.EncodeImage(pixels), Run(image, OnnxExport.InputName, Images(pixels), OnnxExport.ImageEmbedsName));

            var noTower = Cli.CliRunner.Run("export", "--clip", "--checkpoint", checkpoint, "--onnx", text);
            Cli.CliRunner.AssertOneLineError(noTower, "--tower image or --tower text");
            Assert.Equal(2, noTower.ExitCode);
            var badTower = Cli.CliRunner.Run("export", "--clip", "--tower", "audio", "--checkpoint", checkpoint, "--onnx", text);
            Cli.CliRunner.AssertOneLineError(badTower, "--tower must be image or text");
            Assert.Equal(2, badTower.ExitCode);
            var asVit = Cli.CliRunner.Run("export", "--checkpoint", checkpoint, "--onnx", text);
            Cli.CliRunner.AssertOneLineError(asVit, "a CLIP checkpoint; export one of its towers");
            Assert.Equal(2, asVit.ExitCode);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
