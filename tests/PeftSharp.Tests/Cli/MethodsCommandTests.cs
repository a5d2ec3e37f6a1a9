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
            // methods-vpetl.md: DTL r 2, Adapter+ r 8, Hydra r 2, Mona 64-dim × 24 modules.
            ["dtl"] = 36_864, ["adapter-plus"] = 165_984, ["hydra"] = 239_712, ["mona"] = 2_684_928,
            // NOAH until searched (every module at width 5 in all 12 blocks), LAST at rank 16.
            ["noah"] = 331_836, ["last"] = 618_048,
        };
        foreach (var (method, count) in expected)
            Assert.True(rows[method]["trainable_params"]!.GetValue<long>() == count, $"{method}: {rows[method]["trainable_params"]} != {count}");
        Assert.False(rows["vpt-deep"]["mergeable"]!.GetValue<bool>());
        Assert.True(rows["lora"]["mergeable"]!.GetValue<bool>());
        Assert.Equal(8, rows["lora"]["hyper"]!["rank"]!.GetValue<int>());
    }

    [Fact]
    public void Methods_json_gives_each_methods_published_vtab_figure_and_its_source()
    {
        var r = CliRunner.Run("methods", "--model", "vit_tiny_patch16_224", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var rows = JsonNode.Parse(r.Stdout)!.AsArray().ToDictionary(n => n!["method"]!.GetValue<string>(), n => n!.AsObject());
        var lora = rows["lora"]["published_vtab1k"]!;
        Assert.Contains("Mai et al.", lora["source"]!.GetValue<string>());
        Assert.Equal(74.58, rows["dtl"]["published_vtab1k"]!["mean19"]!.GetValue<double>());
        Assert.Equal(77.6, rows["adapter-plus"]["published_vtab1k"]!["mean_of_groups"]!.GetValue<double>());
        Assert.Equal(74.21, rows["hydra"]["published_vtab1k"]!["mean19"]!.GetValue<double>());
        Assert.Null(rows["mona"]["published_vtab1k"]);   // Mona publishes no VTAB-1K figure
        Assert.Equal(76.4, rows["spt-lora"]["published_vtab1k"]!["mean_of_groups"]!.GetValue<double>());
        Assert.Equal(76.4, rows["spt-adapter"]["published_vtab1k"]!["mean_of_groups"]!.GetValue<double>());
        Assert.Equal(73.25, rows["noah"]["published_vtab1k"]!["mean19"]!.GetValue<double>());
        Assert.Equal(74.15, rows["last"]["published_vtab1k"]!["mean19"]!.GetValue<double>());
        Assert.Contains("He et al.", rows["spt-lora"]["reference"]!.GetValue<string>());
        Assert.True(rows["spt-lora"]["mergeable"]!.GetValue<bool>());
        Assert.False(rows["spt-adapter"]["mergeable"]!.GetValue<bool>());
        Assert.True(rows["hydra"]["mergeable"]!.GetValue<bool>());
        Assert.False(rows["dtl"]["mergeable"]!.GetValue<bool>());
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

    [Theory]
    // ViT-Tiny (D 192): the cheapest SPT-LoRA module is rank 8 on a 192×192 matrix, 3,072 parameters; NOAH's smallest
    // subnet is each module at width 5 in the first 3 of 12 blocks.
    [InlineData("spt-lora", "budget=3000", "'budget' = 3000 is smaller than one structured module (3072 parameters")]
    [InlineData("noah", "limit=1000", "'limit' = 1000 is smaller than the smallest subnet (")]
    [InlineData("last", "gap=5", "'gap' = 5 does not divide the 12 blocks")]
    public void Bad_budgets_and_limits_of_issue_28s_methods_are_one_line_and_exit_code_2(string method, string set, string expected)
    {
        var r = CliRunner.Run("methods", "--model", "vit_tiny_patch16_224", "--method", method, "--set", set);
        Assert.Equal(2, r.ExitCode);
        CliRunner.AssertOneLineError(r, expected);
    }
}

public class VersionTests
{
    [Fact]
    public void Version_prints_the_one_version_the_library_and_the_tool_share()
    {
        var r = CliRunner.Run("--version");
        Assert.Equal(0, r.ExitCode);
        string expected = typeof(PeftSharpVersion).Assembly.GetName().Version!.ToString(3);
        Assert.Equal(expected, PeftSharpVersion.Text);
        Assert.Equal(expected, typeof(PeftSharp.Cli.Commands.TrainCommand).Assembly.GetName().Version!.ToString(3));
        Assert.StartsWith($"peftsharp {expected} (TorchSharp 0.107.", r.Stdout);
    }
}
