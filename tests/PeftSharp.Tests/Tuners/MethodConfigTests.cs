using PeftSharp.Models;
using PeftSharp.Tuners;

namespace PeftSharp.Tests.Tuners;

/// <summary>The typed C# configurations are the string form's settings, nothing more and nothing less.</summary>
public sealed class MethodConfigTests
{
    [Fact]
    public void A_typed_config_applies_exactly_what_the_string_form_applies()
    {
        var typed = new LoraConfig { Rank = 16, Alpha = 32, Targets = ["qkv", "proj"], RsLora = false };
        Assert.Equal(new Dictionary<string, string> { ["rank"] = "16", ["alpha"] = "32", ["targets"] = "qkv,proj", ["rslora"] = "false" }, typed.Settings());
        var a = PeftModel.Create(TunerTestKit.Backbone(), typed);
        var b = PeftModel.Create(TunerTestKit.Backbone(), "lora", new Dictionary<string, string> { ["rank"] = "16", ["alpha"] = "32", ["targets"] = "qkv,proj" });
        Assert.Equal(b.TrainableParameters().Select(p => (p.Name, p.Parameter.numel())), a.TrainableParameters().Select(p => (p.Name, p.Parameter.numel())));
        // Unset properties are the method's own defaults, not a second copy of them.
        Assert.Empty(new LoraConfig().Settings());
        Assert.Equal(PeftModel.Create(TunerTestKit.Backbone(), "lora").CountTrainable(), PeftModel.Create(TunerTestKit.Backbone(), new LoraConfig()).CountTrainable());
        Assert.Equal("adaptformer", new AdapterConfig { Kind = AdapterKind.AdaptFormer }.Method);
        Assert.Equal(("vpt-shallow", "dora"), (new VptConfig { Deep = false }.Method, new DoraConfig { Rank = 4 }.Method));
        Assert.Equal(0.5, double.Parse(new VptConfig { Prompts = 5, Dropout = 0.5 }.Settings()["dropout"], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void A_bad_value_is_an_error_naming_the_field_and_merge_returns_the_given_model_type()
    {
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(TunerTestKit.Backbone(), new LoraConfig { Rank = 0 }));
        Assert.Contains("rank", e.Message);
        var peft = PeftModel.Create(TunerTestKit.Backbone(), new LoraConfig { Rank = 2 });
        var summary = peft.TrainableParameterSummary();
        Assert.Equal(peft.CountTrainable(), summary.Method);
        Assert.Equal(summary.Trainable, summary.Method + summary.Head);
        Assert.StartsWith("trainable params: ", summary.ToString());
        VisionTransformer merged = peft.MergeAndUnload<VisionTransformer>();
        Assert.Same(peft.Root, merged);
        var other = PeftModel.Create(TunerTestKit.Backbone(), PlainMethodConfig.BitFit);
        Assert.Contains("VisionTransformer, not a ClipModel", Assert.Throws<PeftSharpException>(() => other.MergeAndUnload<ClipModel>()).Message);
    }
}
