using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

public class AdapterFileTests
{
    public static IEnumerable<object[]> Methods() =>
        TunerRegistry.ImageMethods.Select(m => new object[] { m.Id }).Append(new object[] { "ssf+lora" });

    [Theory]
    [MemberData(nameof(Methods))]
    public void Adapter_files_reproduce_the_tuned_model_on_a_fresh_base(string method)
    {
        manual_seed(6);
        using var model = TunerTestKit.Backbone();
        model.ResetClassifier(7);
        var peft = PeftModel.Create(model, method, method.Contains("lora") ? TunerRegistry.ParseSettings(new[] { "rank=4", "alpha=8" }) : TunerTestKit.SettingsFor(method));
        var (x, _) = TunerTestKit.Batch();
        var labels = randint(0, 7, new long[] { 8 });
        TunerTestKit.Train(peft, x, labels, steps: 2);
        var expected = TunerTestKit.EvalLogits(model, x);
        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, dir, "vit_tiny_timm.safetensors");

        using var fresh = TunerTestKit.Backbone();
        var loaded = AdapterFiles.Load(fresh, dir);
        Assert.Equal(peft.MethodSpec, loaded.MethodSpec);
        TensorAssert.Identical(expected, TunerTestKit.EvalLogits(fresh, x), $"{method} reloaded");
        using var file = SafeTensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFile));
        Assert.DoesNotContain(file.Tensors, t => t.Name.Contains("base_layer"));
    }

    [Fact]
    public void Lora_round_trips_the_hugging_face_peft_format()
    {
        manual_seed(7);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "lora", TunerRegistry.ParseSettings(new[] { "rank=4", "alpha=16", "targets=qkv,fc1" }));
        var (x, y) = TunerTestKit.Batch();
        TunerTestKit.Train(peft, x, y, steps: 2);
        var expected = TunerTestKit.EvalLogits(model, x);
        string dir = TestFiles.TempDir();
        AdapterFiles.SaveHuggingFace(peft, dir, "vit_tiny_timm");

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!.AsObject();
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(16, config["lora_alpha"]!.GetValue<double>());
        Assert.Equal(new[] { "qkv", "fc1" }, config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).OrderByDescending(s => s));
        using (var file = SafeTensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors")))
        {
            Assert.Equal(new long[] { 4, 64 }, file.Info("base_model.model.blocks.0.attn.qkv.lora_A.weight").Shape);
            Assert.Equal(new long[] { 192, 4 }, file.Info("base_model.model.blocks.0.attn.qkv.lora_B.weight").Shape);
            Assert.True(file.Contains("base_model.model.blocks.1.mlp.fc1.lora_B.weight"));
            Assert.True(file.Contains("base_model.model.head.weight"));
        }

        using var fresh = TunerTestKit.Backbone();
        var loaded = AdapterFiles.Load(fresh, dir);
        TensorAssert.Identical(expected, TunerTestKit.EvalLogits(fresh, x), "HF peft reload");
        // peft's merged delta is B·A·(lora_alpha / r): check one layer against that definition.
        var wrapper = (PeftSharp.Tuners.Methods.LoraLinear)fresh.blocks[0].attn.qkv;
        TensorAssert.Close(wrapper.lora_B.weight!.matmul(wrapper.lora_A.weight!) * (16.0 / 4), wrapper.DeltaWeight(), atol: 1e-7, what: "scaling alpha/r");
    }

    [Fact]
    public void Hugging_face_format_refuses_a_subset_of_the_fused_qkv()
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "lora", TunerRegistry.ParseSettings(new[] { "targets=q,v" }));
        var e = Assert.Throws<PeftSharpException>(() => AdapterFiles.SaveHuggingFace(peft, TestFiles.TempDir()));
        Assert.Contains("subset of q, k, v", e.Message);
    }

    [Fact]
    public void Loading_adapter_weights_of_another_shape_names_the_tensor()
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "lora", TunerRegistry.ParseSettings(new[] { "rank=4" }));
        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, dir);
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"),
            File.ReadAllText(Path.Combine(dir, "adapter_config.json")).Replace("\"rank\": 4", "\"rank\": 2"));
        using var fresh = TunerTestKit.Backbone();
        var e = Assert.Throws<PeftSharpException>(() => AdapterFiles.Load(fresh, dir));
        Assert.Contains("lora_A.weight", e.Message);
        Assert.Contains("shape", e.Message);
    }
}
