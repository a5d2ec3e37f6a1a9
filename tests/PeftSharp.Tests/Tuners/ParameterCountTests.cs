using PeftSharp.Models;
using PeftSharp.Tuners;

namespace PeftSharp.Tests.Tuners;

/// <summary>
/// Trainable parameters (head excluded) on ViT-B/16 against the formulas of shared/reference/methods.md:
/// its check values, and the same formulas at other hyperparameter values.
/// </summary>
public class ParameterCountTests
{
    const long D = 768, L = 12;

    static long Count(string method, params string[] sets)
    {
        using var model = new VisionTransformer(VitPresets.Get("vit_base_patch16_224") with { NumClasses = 10 });
        return PeftModel.Create(model, method, TunerRegistry.ParseSettings(sets)).CountTrainable();
    }

    [Theory]
    // The check values of methods.md.
    [InlineData("linear", "", 0L)]
    [InlineData("full", "", 85_798_656L)]
    [InlineData("vpt-shallow", "prompts=10", 7_680L)]
    [InlineData("vpt-deep", "prompts=10", 92_160L)]
    [InlineData("bitfit", "", 102_912L)]
    [InlineData("layernorm", "", 38_400L)]
    [InlineData("difffit", "", 140_544L)]
    [InlineData("ssf", "", 205_824L)]
    [InlineData("adapter-pfeiffer", "rank=8", 156_768L)]
    [InlineData("adapter-houlsby", "rank=1", 55_320L)]
    [InlineData("adaptformer", "rank=16", 304_320L)]
    [InlineData("convpass", "rank=8", 327_552L)]
    [InlineData("repadapter", "rank=8", 239_808L)]
    [InlineData("lora", "rank=32", 1_179_648L)]
    [InlineData("lora", "rank=1", 36_864L)]
    [InlineData("fact-tt", "rank=8", 21_504L)]
    [InlineData("fact-tk", "rank=32", 86_528L)]
    public void Matches_the_check_values_of_methods_md(string method, string set, long expected) =>
        Assert.Equal(expected, Count(method, set.Length > 0 ? new[] { set } : Array.Empty<string>()));

    public static IEnumerable<object[]> Formulas()
    {
        long Adapter(long r) => 2 * D * r + r + D;
        foreach (int p in new[] { 5, 100 }) yield return new object[] { "vpt-shallow", $"prompts={p}", p * D };
        foreach (int p in new[] { 5, 50 }) yield return new object[] { "vpt-deep", $"prompts={p}", L * p * D };
        foreach (int r in new[] { 4, 64 }) yield return new object[] { "adapter-pfeiffer", $"rank={r}", L * Adapter(r) };
        foreach (int r in new[] { 8, 32 }) yield return new object[] { "adapter-houlsby", $"rank={r}", 2 * L * Adapter(r) };
        foreach (int r in new[] { 4, 32 }) yield return new object[] { "adaptformer", $"rank={r}", L * Adapter(r) };
        foreach (int r in new[] { 16 }) yield return new object[] { "convpass", $"rank={r}", 2 * L * (2 * D * r + 9 * r * r + 2 * r + D) };
        foreach (int r in new[] { 16, 32 }) yield return new object[] { "repadapter", $"rank={r}", 2 * L * (D * r + r + D * r / 2 + D) };
        foreach (int r in new[] { 8, 16 }) yield return new object[] { "lora", $"rank={r}", 4 * D * L * r };
        foreach (int d in new[] { 16, 32 }) yield return new object[] { "fact-tt", $"rank={d}", 2 * D * d + 144 * d * d };
        foreach (int d in new[] { 16, 64 }) yield return new object[] { "fact-tk", $"rank={d}", 2 * D * d + 144 * d + (long)d * d * d };
        // Beyond the study: LoRA on q and v only (A: D×r, B: 2D×r), DoRA (LoRA + a magnitude per output row),
        // prefix tuning (keys and values), partial-k (one ViT-B block + the final norm).
        yield return new object[] { "lora", "rank=8;targets=q,v", 3 * D * L * 8 };
        yield return new object[] { "lora", "rank=4;targets=qkv,proj,fc1,fc2", L * 4 * ((D + 3 * D) + (D + D) + (D + 4 * D) + (4 * D + D)) };
        yield return new object[] { "dora", "rank=8", 4 * D * L * 8 + L * 3 * D };
        yield return new object[] { "prefix", "prompts=10", 2 * L * 10 * D };
        yield return new object[] { "partial-k", "k=1", 7_087_872L + 2 * D };
        yield return new object[] { "ssf+lora", "rank=8", 205_824L + 4 * D * L * 8 };
    }

    [Theory]
    [MemberData(nameof(Formulas))]
    public void Matches_the_formulas_at_other_values(string method, string sets, long expected) =>
        Assert.Equal(expected, Count(method, sets.Split(';')));
}
