using System.Text.Json.Nodes;

namespace PeftSharp.Tests.Cli;

public class MethodsCommandTests
{
    [Fact]
    public void Methods_json_for_vit_b16_reproduces_the_check_values_of_methods_md()
    {
        var r = CliRunner.Run("methods", "--model", "vit_base_patch16_224", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var rows = JsonNode.Parse(r.Stdout)!.AsArray().ToDictionary(n => n!["method"]!.GetValue<string>(), n => n!.AsObject());
        // Defaults: prompts 10, adapters r 8 (AdaptFormer 16, ConvPass 8, RepAdapter 8), LoRA r 8, FacT-TT d 8, FacT-TK d 32.
        var expected = new Dictionary<string, long>
        {
            ["linear"] = 0, ["full"] = 85_798_656, ["vpt-shallow"] = 7_680, ["vpt-deep"] = 92_160, ["bitfit"] = 102_912,
            ["layernorm"] = 38_400, ["difffit"] = 140_544, ["ssf"] = 205_824, ["adapter-pfeiffer"] = 156_768,
            ["adaptformer"] = 304_320, ["convpass"] = 327_552, ["repadapter"] = 239_808, ["fact-tt"] = 21_504, ["fact-tk"] = 86_528,
        };
        foreach (var (method, count) in expected)
            Assert.True(rows[method]["trainable_params"]!.GetValue<long>() == count, $"{method}: {rows[method]["trainable_params"]} != {count}");
        Assert.False(rows["vpt-deep"]["mergeable"]!.GetValue<bool>());
        Assert.True(rows["lora"]["mergeable"]!.GetValue<bool>());
        Assert.Equal(8, rows["lora"]["hyper"]!["rank"]!.GetValue<int>());
    }

    [Theory]
    [InlineData("lora", "rank=32", 1_179_648L)]
    [InlineData("lora", "rank=1", 36_864L)]
    [InlineData("adapter-houlsby", "rank=1", 55_320L)]
    public void Methods_with_set_reproduces_the_other_check_values(string method, string set, long expected)
    {
        var r = CliRunner.Run("methods", "--model", "vit_base_patch16_224", "--method", method, "--set", set, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(expected, JsonNode.Parse(r.Stdout)!.AsArray()[0]!["trainable_params"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("--method", "lorax", "unknown method 'lorax'")]
    [InlineData("--set", "rank=0", "'rank' must be >= 1, got 0")]
    [InlineData("--set", "bogus=1", "unknown hyperparameter 'bogus'")]
    public void Bad_method_or_hyperparameter_is_one_clear_line(string option, string value, string expected)
    {
        var args = new List<string> { "methods", "--model", "vit_tiny_patch16_224", option, value };
        if (option == "--set") args.AddRange(new[] { "--method", "lora" });
        if (value == "bogus=1") args.RemoveRange(args.Count - 2, 2);
        CliRunner.AssertOneLineError(CliRunner.Run(args.ToArray()), expected);
    }
}
