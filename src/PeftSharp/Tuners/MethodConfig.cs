using System.Globalization;
using PeftSharp.Models;
using TorchSharp;

namespace PeftSharp.Tuners;

/// <summary>
/// A method and its hyperparameters as a typed C# value (peft's LoraConfig and friends), beside the string form the
/// CLI uses: <c>PeftModel.Create(vit, new LoraConfig { Rank = 16, Targets = ["qkv"] })</c>. A property left null
/// takes the method's default (declared once, in the method's file), so the typed and string forms never disagree;
/// values are checked by the method's hyperparameter declarations, errors naming the field.
/// </summary>
public abstract record MethodConfig
{
    /// <summary>The registry id ("lora").</summary>
    public abstract string Method { get; }

    /// <summary>The set hyperparameters by their registry names (what <c>--set name=value</c> would give).</summary>
    protected abstract IEnumerable<(string Name, object? Value)> Values();

    /// <summary>The string form: only the hyperparameters that were set.</summary>
    public IReadOnlyDictionary<string, string> Settings() =>
        Values().Where(v => v.Value is not null).ToDictionary(v => v.Name, v => Text(v.Value!));

    static string Text(object value) => value switch
    {
        bool b => b ? "true" : "false",
        IEnumerable<string> list => string.Join(",", list),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}

/// <summary>The low-rank update's settings, shared by LoRA and DoRA.</summary>
public abstract record LowRankConfig : MethodConfig
{
    public int? Rank { get; init; }
    /// <summary>Scaling numerator: s = alpha/r (alpha/√r with <see cref="RsLora"/>); null = 1, as in the unifying study.</summary>
    public double? Alpha { get; init; }
    public bool? RsLora { get; init; }
    public double? Dropout { get; init; }
    /// <summary>q, k, v (sections of the fused qkv) or Linear layer names/patterns (qkv, proj, fc1, fc2).</summary>
    public IReadOnlyList<string>? Targets { get; init; }
    protected override IEnumerable<(string, object?)> Values() =>
        [("rank", Rank), ("alpha", Alpha), ("rslora", RsLora), ("dropout", Dropout), ("targets", Targets)];
}

/// <summary>LoRA (Hu et al.): W + (alpha/r)·BA on the targets (q,k,v sections of the fused qkv by default).</summary>
public sealed record LoraConfig : LowRankConfig
{
    public override string Method => "lora";
}

/// <summary>DoRA (Liu et al.): LoRA's direction update with a learned magnitude.</summary>
public sealed record DoraConfig : LowRankConfig
{
    public override string Method => "dora";
}

/// <summary>VPT (Jia et al.): learnable prompt tokens, before the first block (shallow) or before every block (deep).</summary>
public sealed record VptConfig : MethodConfig
{
    public bool Deep { get; init; } = true;
    public override string Method => Deep ? "vpt-deep" : "vpt-shallow";
    public int? Prompts { get; init; }
    public double? Dropout { get; init; }
    protected override IEnumerable<(string, object?)> Values() => [("prompts", Prompts), ("dropout", Dropout)];
}

/// <summary>The bottleneck adapters: Pfeiffer (after the MLP), Houlsby (after attention and MLP), AdaptFormer (parallel
/// to the MLP).</summary>
public sealed record AdapterConfig : MethodConfig
{
    public AdapterKind Kind { get; init; } = AdapterKind.Pfeiffer;
    public override string Method => Kind switch
    {
        AdapterKind.Pfeiffer => "adapter-pfeiffer",
        AdapterKind.Houlsby => "adapter-houlsby",
        AdapterKind.AdaptFormer => "adaptformer",
        _ => throw new PeftSharpException("adapter kind", $"unknown adapter kind {Kind}"),
    };
    public int? Rank { get; init; }
    public double? Scale { get; init; }
    public double? Dropout { get; init; }
    protected override IEnumerable<(string, object?)> Values() => [("rank", Rank), ("scale", Scale), ("dropout", Dropout)];
}

public enum AdapterKind { Pfeiffer, Houlsby, AdaptFormer }

/// <summary>A method with no typed record yet, or a composition ("ssf+lora"), in the string form.</summary>
public sealed record NamedMethodConfig(string Spec, IReadOnlyDictionary<string, string>? Set = null) : MethodConfig
{
    public override string Method => Spec;
    protected override IEnumerable<(string, object?)> Values() => (Set ?? new Dictionary<string, string>()).Select(kv => (kv.Key, (object?)kv.Value));
}

/// <summary>A method with no hyperparameters: "linear", "full", "bitfit", "layernorm", "ssf", "difffit".</summary>
public sealed record PlainMethodConfig(string Id) : MethodConfig
{
    public override string Method => Id;
    protected override IEnumerable<(string, object?)> Values() => [];

    public static readonly PlainMethodConfig Linear = new("linear"), Full = new("full"), BitFit = new("bitfit"),
        LayerNorm = new("layernorm"), Ssf = new("ssf"), DiffFit = new("difffit");
}

/// <summary>What trains in a <see cref="PeftModel"/> (peft's print_trainable_parameters).</summary>
public sealed record TrainableParameterCount(long Trainable, long Method, long Head, long Total)
{
    public double Percent => Total == 0 ? 0 : 100.0 * Trainable / Total;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"trainable params: {Trainable:N0} (method {Method:N0}, head {Head:N0}) || all params: {Total:N0} || trainable%: {Percent:F4}");
}
