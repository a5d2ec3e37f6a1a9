using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// Visual prompt tuning (Jia et al. 2022). Shallow: p learnable tokens inserted after the class token, once, before
/// block 0. Deep: a fresh set of p tokens before every block, dropped after it. Prompts are initialised uniformly in
/// ±√(6 / (3·P² + D)) (P the patch size) and pass through dropout 0.1, as in the VPT code the study uses.
/// </summary>
public abstract class VptBase : TunerMethod
{
    public override bool Mergeable => false;
    public override string Reference => "Jia et al., ECCV 2022 (VPT); init and prompt dropout as in its code";
    protected abstract int[] PromptGrid { get; }

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("prompts", 10, PromptGrid, "number of prompt tokens p", min: 1),
        HyperSpec.Double("dropout", 0.1, Array.Empty<double>(), "dropout on the prompt tokens", min: 0, max: 0.99),
    };

    internal static Parameter NewPrompts(int count, IPatchEncoder encoder)
    {
        double bound = Math.Sqrt(6.0 / (3.0 * encoder.PatchSize * encoder.PatchSize + encoder.EmbedDim));
        return new Parameter(empty(count, encoder.EmbedDim).uniform_(-bound, bound));
    }

    /// <summary>x with the prompts placed right after the prefix (class/register) tokens.</summary>
    internal static Tensor Insert(Tensor x, Tensor prompts, TokenLayout layout)
    {
        var batch = prompts.unsqueeze(0).expand(x.shape[0], -1, -1);
        int prefix = layout.PrefixTokens;
        layout.Prompts += (int)prompts.shape[0];
        return cat(new[] { x[.., ..prefix], batch, x[.., prefix..] }, 1);
    }
}

public sealed class VptShallow : VptBase
{
    public override CapacityKnob? Capacity => new("prompts", ["5", "10"], ["1", "5", "10", "20", "50"]);
    public override string Id => "vpt-shallow";
    public override string Summary => "p prompt tokens prepended once, before block 0";
    protected override int[] PromptGrid => new[] { 5, 10, 50, 100, 200 };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequirePatches(Id);
        var prompts = new ShallowPrompts(NewPrompts(h.Int("prompts"), vit), h.Double("dropout"));
        vit.Attach("vpt", prompts, EncoderPoint.AfterEmbedding);
        return new HookTuner(this, h, encoder, prompts.parameters(), () => vit.Tuners.Remove((nn.Module)vit, "vpt"));
    }
}

public sealed class VptDeep : VptBase
{
    public override CapacityKnob? Capacity => new("prompts", ["5", "10"], ["1", "5", "10", "20", "50"]);
    public override string Id => "vpt-deep";
    public override string Summary => "fresh p prompt tokens before every block, dropped after it";
    protected override int[] PromptGrid => new[] { 5, 10, 50, 100 };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequirePatches(Id);
        return HookTuner.PerBlock(this, h, encoder, new[] { ("vpt", new[] { InsertionPoint.BlockInput, InsertionPoint.BlockOutput }) },
                                  _ => new DeepPrompts(NewPrompts(h.Int("prompts"), vit), h.Double("dropout")));
    }
}

/// <summary>Prompt tokens inserted once after the embedding.</summary>
public sealed class ShallowPrompts : EncoderTuner
{
    public Parameter prompts;
    public ParallelDropout prompt_dropout;

    public ShallowPrompts(Parameter prompts, double dropout) : base("ShallowPrompts")
    {
        this.prompts = prompts;
        prompt_dropout = new ParallelDropout(dropout);
        RegisterComponents();
    }

    public override Tensor Apply(EncoderPoint point, Tensor x, TokenLayout layout) =>
        VptBase.Insert(x, prompt_dropout.forward(prompts), layout);
}

/// <summary>One block's prompt tokens: inserted at the block's input, removed at its output.</summary>
public sealed class DeepPrompts : BlockTuner
{
    public Parameter prompts;
    public ParallelDropout prompt_dropout;

    public DeepPrompts(Parameter prompts, double dropout) : base("DeepPrompts")
    {
        this.prompts = prompts;
        prompt_dropout = new ParallelDropout(dropout);
        RegisterComponents();
    }

    /// <summary>The prompts enter after the prefix tokens and leave at the block output; a sequence cut after the
    /// prefix loses nothing when they leave.</summary>
    public override bool PrefixTokensStandAlone => true;

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (point == InsertionPoint.BlockInput) return VptBase.Insert(x, prompt_dropout.forward(prompts), layout);
        int prefix = layout.PrefixTokens, count = (int)prompts.shape[0];
        layout.Prompts -= count;
        if (x.shape[1] <= prefix) return x;   // a sequence cut after the prefix holds no prompts
        return cat(new[] { x[.., ..prefix], x[.., (prefix + count)..] }, 1);
    }
}

/// <summary>An applied method made of hook modules (prompts, adapters): trains their parameters, never merges.</summary>
public sealed class HookTuner : AppliedTuner
{
    readonly List<Parameter> parameters;
    readonly Action detach;

    public HookTuner(TunerMethod method, Hyperparameters h, TunableEncoder encoder, IEnumerable<Parameter> parameters, Action detach)
        : base(method, h, encoder)
    {
        this.parameters = parameters.ToList();
        this.detach = detach;
    }

    public override IEnumerable<Parameter> TrainableParameters() => parameters;
    public override void Detach() => detach();

    /// <summary>Attaches a fresh module from <paramref name="create"/> to every block under each placement's name and
    /// insertion points; the method trains their parameters and detaching removes them all.</summary>
    public static HookTuner PerBlock(TunerMethod method, Hyperparameters h, TunableEncoder encoder,
                                     IReadOnlyList<(string Name, InsertionPoint[] Points)> placements,
                                     Func<(string Name, InsertionPoint[] Points), BlockTuner> create)
    {
        var attached = new List<(Block Block, string Name, BlockTuner Module)>();
        foreach (var block in encoder.Blocks)
            foreach (var placement in placements)
            {
                var module = create(placement);
                block.Attach(placement.Name, module, placement.Points);
                attached.Add((block, placement.Name, module));
            }
        return new HookTuner(method, h, encoder, attached.SelectMany(a => a.Module.parameters()),
                             () => attached.ForEach(a => a.Block.Tuners.Remove(a.Block, a.Name)));
    }
}
