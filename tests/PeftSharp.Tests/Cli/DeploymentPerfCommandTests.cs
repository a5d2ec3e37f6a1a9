using System.Text.Json.Nodes;
using PeftSharp.Models;

namespace PeftSharp.Tests.Cli;

/// <summary>`perf --multi-adapter` and `perf --onnx`: the documented fields, the parameter counts each deployment
/// holds (counted by hand from the shapes), the ratio as the quotient of the two rates; bad combinations in one line.</summary>
public class DeploymentPerfCommandTests
{
    const string Config = """{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}""";

    [Fact]
    public void Multi_adapter_perf_reports_both_deployments_and_what_each_holds()
    {
        var r = CliRunner.Run("perf", "--config", Config, "--multi-adapter", "3", "--set", "rank=2", "--batch", "6", "--steps", "1", "--warmup", "0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!.AsObject();
        Assert.Equal(3, json["tasks"]!.GetValue<int>());
        double mixed = json["mixed_batch_images_per_s"]!.GetValue<double>(), perTask = json["one_merged_model_per_task_images_per_s"]!.GetValue<double>();
        Assert.True(mixed > 0 && perTask > 0);
        Assert.Equal(Math.Round(mixed / perTask, 3), json["mixed_vs_per_task"]!.GetValue<double>(), 0.002);

        // Backbone without a head: 16 patches of 8·8·3 → 32, cls, 17 positions, 2 blocks of width 32 (MLP 128).
        long block = 2 * 32 * 2 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32);
        long backbone = (192 * 32 + 32) + 32 + 17 * 32 + 2 * block + 2 * 32;
        using (var vit = new VisionTransformer(VitConfig.FromJson(Config) with { NumClasses = 0 }))
            Assert.Equal(backbone, vit.parameters().Sum(p => p.numel()));
        long heads = Enumerable.Range(0, 3).Sum(t => 33L * (10 + t));   // task t has 10 + t classes
        long lora = 3 * 2 * (2 * 32 + 96 * 2);                            // rank 2 on the fused qkv of both blocks
        Assert.Equal(backbone + heads + lora, json["shared_backbone_parameters"]!.GetValue<long>());
        Assert.Equal(3 * backbone + heads, json["one_model_per_task_parameters"]!.GetValue<long>());
    }

    [Fact]
    public void Onnx_perf_reports_both_runtimes_and_refuses_what_it_cannot_compare()
    {
        var r = CliRunner.Run("perf", "--config", Config, "--onnx", "--batch", "4", "--steps", "1", "--warmup", "0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!.AsObject();
        double ours = json["peftsharp_images_per_s"]!.GetValue<double>(), ort = json["onnxruntime_images_per_s"]!.GetValue<double>();
        Assert.True(ours > 0 && ort > 0);
        Assert.Equal(Math.Round(ours / ort, 3), json["peftsharp_vs_onnxruntime"]!.GetValue<double>(), 0.002);
        Assert.Equal("lora", json["method"]!.GetValue<string>());

        var notMergeable = CliRunner.Run("perf", "--config", Config, "--onnx", "--methods", "vpt-shallow", "--batch", "4", "--steps", "1");
        CliRunner.AssertOneLineError(notMergeable, "'vpt-shallow' does not merge");
        Assert.Equal(2, notMergeable.ExitCode);
        var profile = CliRunner.Run("perf", "--config", Config, "--multi-adapter", "2", "--profile");
        CliRunner.AssertOneLineError(profile, "--profile does not apply");
        Assert.Equal(2, profile.ExitCode);
        var both = CliRunner.Run("perf", "--config", Config, "--onnx", "--multi-adapter", "2");
        CliRunner.AssertOneLineError(both, "separate measurements");
        Assert.Equal(2, both.ExitCode);
    }
}
