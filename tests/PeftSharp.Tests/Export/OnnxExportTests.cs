using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using PeftSharp.Export;
using PeftSharp.Inference;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Export;

/// <summary>Exported ViTs run in ONNX Runtime to our logits (1e-4), for every architecture switch the exporter reads.</summary>
public class OnnxExportTests
{
    public static TheoryData<string> Variants => new() { "token", "avg+fc_norm+reg+layer_scale+quick_gelu+pre_norm", "no_embed_class+avg" };

    static VitConfig Config(string variant) => variant switch
    {
        "token" => new VitConfig { ImgSize = 16, PatchSize = 4, EmbedDim = 24, Depth = 2, NumHeads = 3, NumClasses = 5 },
        "no_embed_class+avg" => new VitConfig { ImgSize = 16, PatchSize = 4, EmbedDim = 24, Depth = 2, NumHeads = 2, NumClasses = 3, NoEmbedClass = true, GlobalPool = "avg" },
        _ => new VitConfig
        {
            ImgSize = 16, PatchSize = 8, EmbedDim = 32, Depth = 3, NumHeads = 4, NumClasses = 7, GlobalPool = "avg", FcNorm = true,
            RegTokens = 2, InitValues = 0.5, ActLayer = "quick_gelu", PreNorm = true, NormEps = 1e-5,
        },
    };

    static void Randomize(nn.Module model)
    {
        manual_seed(3);
        using var _ = no_grad();
        foreach (var p in model.parameters()) p.copy_(randn_like(p) * 0.3);
    }

    static float[] RunOnnx(string path, Tensor input)
    {
        using var session = new InferenceSession(path);
        var shape = input.shape.Select(d => (int)d).ToArray();
        var data = new DenseTensor(input.contiguous().data<float>().ToArray(), shape);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExport.InputName, data)]);
        return results.Single(r => r.Name == OnnxExport.OutputName).AsEnumerable<float>().ToArray();
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void The_exported_model_computes_our_logits_at_any_batch_size(string variant)
    {
        string dir = TestFiles.TempDir("onnx");
        try
        {
            using var model = new VisionTransformer(Config(variant));
            Randomize(model);
            model.eval();
            string path = Path.Combine(dir, "model.onnx");
            OnnxExport.Save(model, path, new Dictionary<string, string> { ["class_names"] = "[\"a\"]" });
            foreach (int batch in new[] { 1, 3 })
            {
                using var x = randn(batch, 3, model.Config.ImgSize, model.Config.ImgSize);
                float[] expected;
                using (no_grad()) expected = model.forward(x).data<float>().ToArray();
                var actual = RunOnnx(path, x);
                Assert.Equal(expected.Length, actual.Length);
                for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4f);
            }
            using var session = new InferenceSession(path);
            Assert.Equal("[\"a\"]", session.ModelMetadata.CustomMetadataMap["class_names"]);
            Assert.Equal(-1, session.InputMetadata[OnnxExport.InputName].Dimensions[0]);   // the dynamic batch axis
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_model_resampling_its_positions_per_input_is_refused_in_one_line()
    {
        using var model = new VisionTransformer(Config("token") with { DynamicImgSize = true });
        var refused = Assert.Throws<PeftSharpException>(() => OnnxExport.Save(model, "dynamic.onnx"));
        Assert.Equal("dynamic.onnx: a ViT with dynamic_img_size resamples its position table per input size, which the exporter does not express; export it at its img_size", refused.Message);
        Assert.False(File.Exists("dynamic.onnx"));
    }

    [Fact]
    public void A_merged_adapter_exports_and_an_unmerged_one_is_refused_in_one_line()
    {
        string dir = TestFiles.TempDir("onnx-peft");
        try
        {
            using var model = new VisionTransformer(Config("token"));
            Randomize(model);
            var peft = PeftModel.Create(model, "lora", new Dictionary<string, string> { ["rank"] = "2" });
            using (no_grad()) foreach (var (_, p) in peft.TrainableParameters()) p.copy_(randn_like(p) * 0.3);
            model.eval();
            using var x = randn(2, 3, 16, 16);
            float[] unmerged;
            using (no_grad()) unmerged = model.forward(x).data<float>().ToArray();

            var refused = Assert.Throws<PeftSharpException>(() => OnnxExport.Save(model, Path.Combine(dir, "unmerged.onnx")));
            Assert.Contains("merge its adapter first", refused.Message);
            Assert.DoesNotContain('\n', refused.Message);

            peft.MergeAndUnload();
            string path = Path.Combine(dir, "merged.onnx");
            OnnxExport.Save(model, path);
            var actual = RunOnnx(path, x);
            for (int i = 0; i < unmerged.Length; i++) Assert.Equal(unmerged[i], actual[i], 1e-4f);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

/// <summary>`peftsharp export --onnx` of a trained adapter: ONNX Runtime names the classes eval counted.</summary>
public class ExportCommandTests
{
    [Fact]
    public void The_exported_file_predicts_what_eval_predicted_and_bad_targets_are_one_line()
    {
        string root = TestFiles.TempDir("export-cli");
        try
        {
            string data = UserPath.ClassFolders.Create(Path.Combine(root, "photos"), perClass: 12), adapter = Path.Combine(root, "ad");
            Assert.Equal(0, Cli.CliRunner.Run("train", "--data", data, "--method", "lora", "--epochs", "2", "--save-adapter", adapter, "--db", Path.Combine(root, "r.db"), "--quiet").ExitCode);
            string onnx = Path.Combine(root, "model.onnx");
            var export = Cli.CliRunner.Run("export", "--adapter", adapter, "--onnx", onnx);
            Assert.True(export.ExitCode == 0, export.Stderr);

            using var classifier = Classifier.Load(new ClassifierSource { Adapter = adapter });
            var task = PeftSharp.Data.ImageTask.Open(data);
            using var loader = classifier.Loader(task.Test);
            using var session = new InferenceSession(onnx);
            foreach (var batch in loader.Epoch(0))
            {
                using (batch)
                {
                    float[] expected;
                    using (no_grad()) expected = classifier.Model.forward(batch.Images).data<float>().ToArray();
                    var input = new DenseTensor(batch.Images.contiguous().data<float>().ToArray(), batch.Images.shape.Select(d => (int)d).ToArray());
                    using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExport.InputName, input)]);
                    var actual = results.Single().AsEnumerable<float>().ToArray();
                    for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4f);
                }
            }
            Assert.Contains("circle", session.ModelMetadata.CustomMetadataMap[Classifier.ClassNamesKey]);

            string vpt = Path.Combine(root, "vpt");
            Assert.Equal(0, Cli.CliRunner.Run("train", "--data", data, "--method", "vpt-shallow", "--epochs", "1", "--save-adapter", vpt, "--db", Path.Combine(root, "r.db"), "--quiet").ExitCode);
            var refused = Cli.CliRunner.Run("export", "--adapter", vpt, "--onnx", Path.Combine(root, "vpt.onnx"));
            Cli.CliRunner.AssertOneLineError(refused, "cannot merge");
            Assert.Equal(2, refused.ExitCode);
            File.WriteAllText(Path.Combine(root, "blocker"), "");
            var unwritable = Cli.CliRunner.Run("export", "--adapter", adapter, "--onnx", Path.Combine(root, "blocker", "m.onnx"));
            Cli.CliRunner.AssertOneLineError(unwritable, "cannot write the ONNX model");
            Assert.Equal(2, unwritable.ExitCode);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}
