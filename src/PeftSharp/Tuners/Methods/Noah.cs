using PeftSharp.Data;
using System.Diagnostics;
using PeftSharp.Models;
using PeftSharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// NOAH, neural prompt search (Zhang, Zhou, Liu 2022; ZhangYuanhan-AI/NOAH supernet_vision_transformer_timm.py,
/// supernet_engine_prompt.py, evolution.py). Each block may carry three modules: p_l deep prompt tokens, a LoRA of rank
/// r_l on the fused qkv (one A, one B over q|k|v, input dropout 0.1, unscaled), and an adapter of width a_l on the MLP
/// branch after its drop-path, x + y + ln2(dropout(QuickGELU(ln1 y))) (Xavier weights, N(0, 1e-6) biases: not zero at
/// start). For each module type a depth d is chosen from the quarters of the depth (3, 6, 9, 12 on ViT-B) and every one
/// of the first d blocks a width from {5, 10, 50, 100}; the later blocks get none.
/// <para>The pre-pass is the search. A weight-sharing supernet (every module at the largest width, a subnet's modules
/// the leading rows/columns) trains on the first four fifths of the run's training split with a random subnet per step
/// (AdamW, lr 5e-4, weight decay 1e-4, cosine, the head training with it, the backbone in eval mode as in the authors'
/// freeze_stages); an evolutionary search (population 50, 15 generations, top 10 parents, 25 mutations with
/// probabilities 0.2/0.4, 25 crossovers, as evolution.py) scores the subnets within the parameter limit by top-1 on the
/// last fifth. On a final run's train800val200 those fifths are train800 and val200 — the authors' supernet and search
/// splits; on a search run's train800 they are its first 640 and last 160 images, so val200 (that run's evaluation
/// split) stays unseen. The chosen subnet is then built fresh (initialised as the authors' retrain, whose modules are
/// slices of supernet-sized ones) and trained by the run itself: the authors' retrain on the whole training split.</para>
/// <para>Reduced to be affordable on a CPU: the supernet trains <c>supernet_epochs</c> (default 50) epochs where the
/// authors train 500 (ten times a ViT-B retrain's compute), and the search keeps their population and generations
/// (defaults; smaller values make it cheaper still). Left out: the authors' encoder-level prompt tokens and their position
/// embedding, which block 0's prompts replace before any block reads them (their count includes them), and prefix
/// tuning (off in their VTAB search space). Parameters per block D·p + 4D·r + (2D + 1)·a + D·[a &gt; 0]
/// (768p + 3072r + 1537a + 768 on ViT-B). Until searched, every block carries each module at the smallest width. The
/// prompt count runs across blocks, so gradient checkpointing is refused.</para>
/// </summary>
public sealed class Noah : TunerMethod
{
    public override string Id => "noah";
    public override string Summary => "per-block VPT + LoRA + adapter widths found by a supernet and an evolutionary search under a parameter limit (training-split pre-pass)";
    public override bool Mergeable => false;
    public override string Reference => "Zhang, Zhou, Liu 2022 (NOAH); ZhangYuanhan-AI/NOAH (VTAB space {5,10,50,100} × depths {3,6,9,12}, supernet on train800, search on val200); supernet epochs reduced";
    public override PublishedFigure? Published => new(75.5, 73.25, "NOAH paper (group means); V-PETL Bench (19-task mean, best test epoch)");
    /// <summary>The parameter limit, at values that bind on the shipped backbone (its supernet holds 808,152).</summary>
    public override CapacityKnob? Capacity => new("limit", ["100000", "400000"], ["50000", "100000", "200000", "400000"]);

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("limit", 640_000, new[] { 200_000, 640_000 }, "parameter limit of the searched subnet (evolution.py's --param-limits, 0.64M)"),
        HyperSpec.List("widths", "5,10,50,100", "widths each module may take (prompt tokens, LoRA rank, adapter width)"),
        HyperSpec.Int("supernet_epochs", 50, Array.Empty<int>(), "supernet training epochs (the authors: 500)"),
        HyperSpec.Int("population", 50, Array.Empty<int>(), "evolutionary search population"),
        HyperSpec.Int("generations", 15, Array.Empty<int>(), "evolutionary search generations", min: 0),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequireVit(Id);
        var widths = ParseWidths(h.List("widths"));
        var space = NoahSpace.Of(encoder.Blocks.Count, encoder.EmbedDim, widths);
        long limit = h.Int("limit");
        if (limit < space.SmallestParams)
            throw new PeftSharpException($"method 'noah': 'limit' = {limit} is smaller than the smallest subnet ({space.SmallestParams} parameters: each module at width {widths[0]} in the first {space.Depths[0]} blocks)");
        var state = new NoahState(vit);
        var blocks = new List<NoahBlock>();
        var qkvs = new List<NoahQkv>();
        for (int i = 0; i < encoder.Blocks.Count; i++)
        {
            var block = new NoahBlock(state, i, encoder.EmbedDim, widths[^1], vit.Config.PatchSize);
            encoder.Blocks[i].Attach("noah", block, InsertionPoint.BlockInput, InsertionPoint.MlpScale);
            blocks.Add(block);
            var qkv = new NoahQkv(encoder.Blocks[i].attn.qkv);
            ModuleSurgery.Replace(encoder.Blocks[i].attn, "qkv", qkv);
            qkvs.Add(qkv);
        }
        var applied = new NoahApplied(this, h, encoder, vit, space, blocks, qkvs);
        applied.Configure(space.Uniform(widths[0]), supernet: false);
        return applied;
    }

    static int[] ParseWidths(string[] items)
    {
        var widths = new List<int>();
        foreach (var item in items)
            if (!int.TryParse(item, out int w) || w < 1)
                throw new PeftSharpException($"method 'noah': 'widths' must be positive integers, got '{item}'");
            else widths.Add(w);
        return widths.Distinct().Order().ToArray();
    }
}

/// <summary>A subnet: per block the prompt tokens, LoRA rank and adapter width (0: none).</summary>
public sealed record NoahSubnet(int[] Prompts, int[] Lora, int[] Adapter)
{
    public string Key => $"{string.Join(",", Prompts)}|{string.Join(",", Lora)}|{string.Join(",", Adapter)}";
    public (int P, int R, int A) Block(int i) => (Prompts[i], Lora[i], Adapter[i]);
    public override string ToString() => $"prompts [{string.Join(",", Prompts)}], lora [{string.Join(",", Lora)}], adapter [{string.Join(",", Adapter)}]";
}

/// <summary>NOAH's search space on one backbone: the depth choices (quarters of the depth), the widths, the count.</summary>
public sealed record NoahSpace(int Depth, int Dim, IReadOnlyList<int> Widths, IReadOnlyList<int> Depths)
{
    public static NoahSpace Of(int depth, int dim, IReadOnlyList<int> widths) =>
        new(depth, dim, widths, Enumerable.Range(1, 4).Select(q => Math.Max(1, (int)Math.Round(depth * q / 4.0, MidpointRounding.AwayFromZero))).Distinct().ToList());

    /// <summary>D·p + 4D·r + (2D + 1)·a + D·[a &gt; 0]: the prompts, LoRA's A (r×D) and B (3D×r), the adapter's two
    /// layers with biases.</summary>
    public long BlockParams(int p, int r, int a) => (long)Dim * p + 4L * Dim * r + (a > 0 ? (2L * Dim + 1) * a + Dim : 0);

    public long Params(NoahSubnet s) => Enumerable.Range(0, Depth).Sum(i => BlockParams(s.Prompts[i], s.Lora[i], s.Adapter[i]));

    /// <summary>Each module at the smallest width in as few blocks as the space allows.</summary>
    public long SmallestParams => Depths[0] * BlockParams(Widths[0], Widths[0], Widths[0]);

    /// <summary>Every block with each module at width <paramref name="width"/>.</summary>
    public NoahSubnet Uniform(int width) => new(Fill(width), Fill(width), Fill(width));

    int[] Fill(int width) => Enumerable.Repeat(width, Depth).ToArray();

    /// <summary>The authors' sample_configs / get_random_cand: per module type a random depth, then a random width for
    /// each of the first depth blocks.</summary>
    public NoahSubnet Random(Random rng) => new(RandomDims(rng), RandomDims(rng), RandomDims(rng));

    int[] RandomDims(Random rng)
    {
        int depth = Depths[rng.Next(Depths.Count)];
        return Enumerable.Range(0, Depth).Select(i => i < depth ? Widths[rng.Next(Widths.Count)] : 0).ToArray();
    }

    /// <summary>evolution.py's mutation of one module type: with probability m, a new depth (with probability s a random
    /// one, else the current); deeper adds random widths, shallower cuts.</summary>
    internal int[] Mutate(int[] dims, Random rng, double m, double s)
    {
        if (rng.NextDouble() >= m) return dims;
        int current = Array.IndexOf(dims, 0);
        if (current < 0) current = Depth;
        int next = rng.NextDouble() < s ? Depths[rng.Next(Depths.Count)] : current;
        return Enumerable.Range(0, Depth).Select(i => i < Math.Min(current, next) ? dims[i] : i < next ? Widths[rng.Next(Widths.Count)] : 0).ToArray();
    }
}

/// <summary>
/// evolution.py's EvolutionSearcher: a population of random legal subnets (within the limit), then per generation the
/// top parents by score, mutations and crossovers of them (each module type's widths from one parent or the other),
/// and random subnets to refill the population; every subnet is scored once. The best scored subnet is the choice
/// (ties: fewer parameters, then the earlier scored).
/// </summary>
public static class NoahSearch
{
    public const double MutationProbability = 0.2, DepthProbability = 0.4;

    public sealed record Result(NoahSubnet Best, double Score, long Params, int Scored);

    public static Result Run(NoahSpace space, long limit, Func<NoahSubnet, double> score, Random rng, int population, int generations)
    {
        int select = Math.Max(1, population / 5), mutations = population / 2, crossovers = population / 2;
        var scored = new Dictionary<string, (NoahSubnet Subnet, double Score, long Params, int Order)>();
        var candidates = new List<NoahSubnet>();
        var top = new List<NoahSubnet>();

        bool Legal(NoahSubnet s)
        {
            if (scored.ContainsKey(s.Key)) return false;
            long n = space.Params(s);
            if (n > limit) return false;
            scored[s.Key] = (s, score(s), n, scored.Count);
            return true;
        }
        // Subnets from a generator until `count` are legal or `tries` were drawn (the authors' loops are unbounded; a
        // space nearly used up would spin).
        List<NoahSubnet> Fill(Func<NoahSubnet> draw, int count, int tries, List<NoahSubnet>? into = null)
        {
            var found = into ?? new List<NoahSubnet>();
            for (int t = 0; found.Count < count && t < tries; t++)
            {
                var s = draw();
                if (Legal(s)) found.Add(s);
            }
            return found;
        }
        IEnumerable<NoahSubnet> Ranked(IEnumerable<NoahSubnet> subnets) =>
            subnets.OrderByDescending(s => scored[s.Key].Score).ThenBy(s => scored[s.Key].Params).ThenBy(s => scored[s.Key].Order);
        void UpdateTop() => top = Ranked(top.Concat(candidates).DistinctBy(s => s.Key)).Take(select).ToList();

        Fill(() => space.Random(rng), population, 1000 * population, candidates);
        for (int g = 0; g < generations && candidates.Count > 0; g++)
        {
            UpdateTop();
            var mutated = Fill(() =>
            {
                var parent = top[rng.Next(top.Count)];
                return new NoahSubnet(space.Mutate(parent.Prompts, rng, MutationProbability, DepthProbability),
                                      space.Mutate(parent.Lora, rng, MutationProbability, DepthProbability),
                                      space.Mutate(parent.Adapter, rng, MutationProbability, DepthProbability));
            }, mutations, 10 * mutations);
            var crossed = Fill(() =>
            {
                var (a, b) = (top[rng.Next(top.Count)], top[rng.Next(top.Count)]);
                return new NoahSubnet(rng.Next(2) == 0 ? a.Prompts : b.Prompts, rng.Next(2) == 0 ? a.Lora : b.Lora, rng.Next(2) == 0 ? a.Adapter : b.Adapter);
            }, crossovers, 10 * crossovers);
            candidates = mutated.Concat(crossed).ToList();
            Fill(() => space.Random(rng), population, 1000 * population, candidates);
        }
        UpdateTop();
        if (top.Count == 0) throw new PeftSharpException($"method 'noah': no subnet within the limit of {limit} parameters was found");
        var best = scored[top[0].Key];
        return new Result(best.Subnet, best.Score, best.Params, scored.Count);
    }
}

/// <summary>What one forward pass carries from block to block: how many NOAH prompt tokens the sequence holds.</summary>
public sealed class NoahState
{
    readonly VisionTransformer vit;

    public NoahState(VisionTransformer vit) => this.vit = vit;

    public int Prompts { get; set; }

    /// <summary>A checkpointed block runs again alone in the backward, without the prompt count of the blocks before it.</summary>
    public void RefuseCheckpointing()
    {
        if (vit is { GradCheckpointing: true } && vit.training)
            throw new PeftSharpException("method 'noah': its prompts replace the previous block's, which gradient checkpointing (one block at a time) cannot replay; train without it");
    }
}

/// <summary>A block's prompt tokens (key <c>tokens</c>, [capacity, D]) and their dropout.</summary>
public sealed class NoahPrompts : nn.Module
{
    public Parameter tokens;
    public ParallelDropout dropout;

    public NoahPrompts(Tensor initial) : base("NoahPrompts")
    {
        tokens = new Parameter(initial);
        dropout = new ParallelDropout(0.1);
        RegisterComponents();
    }
}

/// <summary>A block's adapter (keys ln1, ln2 as the authors' AdapterSuper): y + ln2(dropout(QuickGELU(ln1 y))),
/// through the leading <c>width</c> rows of ln1 and columns of ln2.</summary>
public sealed class NoahAdapter : nn.Module
{
    public Linear ln1;
    public Linear ln2;
    public ParallelDropout dropout;

    public NoahAdapter(int dim, int capacity, int initWidth) : base("NoahAdapter")
    {
        ln1 = Linear(dim, capacity);
        ln2 = Linear(capacity, dim);
        // Xavier over the supernet-sized layers (the authors' retrain model is built at supernet size and sliced).
        double bound = Math.Sqrt(6.0 / (dim + initWidth));
        using (no_grad())
        {
            ln1.weight!.uniform_(-bound, bound);
            ln2.weight!.uniform_(-bound, bound);
            ln1.bias!.normal_(0, 1e-6);
            ln2.bias!.normal_(0, 1e-6);
        }
        dropout = new ParallelDropout(0.1);
        RegisterComponents();
    }

    public Tensor Forward(Tensor y, int width)
    {
        var w1 = width == ln1.weight!.shape[0] ? ln1.weight : ln1.weight[..width];
        var b1 = width == ln1.weight.shape[0] ? ln1.bias! : ln1.bias![..width];
        var w2 = width == ln2.weight!.shape[1] ? ln2.weight : ln2.weight[.., ..width];
        var hidden = F.linear(y, w1, b1);
        hidden = hidden * sigmoid(1.702 * hidden);   // QuickGELU, as the authors' adapter
        return y + F.linear(dropout.forward(hidden), w2, ln2.bias);
    }
}

/// <summary>
/// One block's NOAH modules at its insertion points: at the block input its prompt tokens replace the previous block's
/// (a block without prompts keeps them, as the authors' supernet does past the prompt depth); after the MLP branch's
/// drop-path its adapter. The block's chosen widths are the buffer <c>dims</c> (p, r, a); the LoRA sits on the qkv
/// (<see cref="NoahQkv"/>).
/// </summary>
public sealed class NoahBlock : BlockTuner
{
    readonly NoahState state;
    readonly int index;
    readonly int dim;
    readonly int capacity;
    readonly int patchSize;
    NoahPrompts? prompt;
    NoahAdapter? adapter;

    public NoahBlock(NoahState state, int index, int dim, int capacity, int patchSize) : base("NoahBlock")
    {
        this.state = state;
        this.index = index;
        this.dim = dim;
        this.capacity = capacity;
        this.patchSize = patchSize;
        register_buffer("dims", zeros(3, dtype: int64));
    }

    public Tensor Dims => get_buffer("dims")!;
    /// <summary>The widths the forward uses: the subnet's, or a supernet sample (≤ the modules' capacity).</summary>
    public (int P, int R, int A) Sample { get; set; }
    public NoahPrompts? Prompt => prompt;
    public NoahAdapter? Adapter => adapter;

    /// <summary>Token by token after the prompts enter, which sit after the prefix tokens.</summary>
    public override bool PrefixTokensStandAlone => true;

    /// <summary>Fresh modules able to serve widths up to (p, r, a) — the subnet's, or the supernet's capacity —
    /// initialised as the authors' supernet-sized modules (<paramref name="initWidth"/>: the largest width).</summary>
    internal void Build(int p, int a, int initWidth, Device device)
    {
        if (prompt is not null) ModuleSurgery.Unregister(this, "prompt");
        if (adapter is not null) ModuleSurgery.Unregister(this, "adapter");
        prompt = null;
        adapter = null;
        if (p > 0)
        {
            // Xavier-uniform of the authors' [1, width, D] parameter: fan_in = width·D, fan_out = D.
            double bound = Math.Sqrt(6.0 / ((initWidth + 1.0) * dim));
            prompt = new NoahPrompts(empty(p, dim).uniform_(-bound, bound)).to(device);
            register_module("prompt", prompt);
        }
        if (a > 0)
        {
            adapter = new NoahAdapter(dim, a, initWidth).to(device);
            register_module("adapter", adapter);
        }
    }

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (point == InsertionPoint.MlpScale) return Sample.A > 0 ? adapter!.Forward(x, Sample.A) : x;
        state.RefuseCheckpointing();
        if (index == 0) state.Prompts = 0;
        if (Sample.P == 0) return x;
        int prefix = layout.PrefixTokens;
        if (state.Prompts > 0)
        {
            x = cat(new[] { x[.., ..prefix], x[.., (prefix + state.Prompts)..] }, 1);
            layout.Prompts -= state.Prompts;
        }
        var tokens = Sample.P == prompt!.tokens.shape[0] ? prompt.tokens : prompt.tokens[..Sample.P];
        state.Prompts = Sample.P;
        return VptBase.Insert(x, prompt.dropout.forward(tokens), layout);
    }
}

/// <summary>The fused qkv with NOAH's LoRA (child <c>lora</c>: keys lora_A [r, D], lora_B [3D, r]): W x + b +
/// B A dropout(x), through the leading <c>Rank</c> rows of A and columns of B.</summary>
public sealed class NoahQkv : ModuleWrapper
{
    NoahLora? lora;

    public NoahQkv(Module<Tensor, Tensor> baseLayer) : base("NoahQkv", baseLayer) => RegisterComponents();

    public int Rank { get; set; }
    public NoahLora? Lora => lora;

    internal void Build(int r, Device device)
    {
        if (lora is not null) ModuleSurgery.Unregister(this, "lora");
        lora = null;
        if (r == 0) return;
        var w = InnermostLinear.weight!;
        lora = new NoahLora(w.shape[1], w.shape[0], r).to(device);
        register_module("lora", lora);
    }

    public override Tensor forward(Tensor x)
    {
        var y = base_layer.forward(x);
        if (Rank == 0) return y;
        var a = Rank == lora!.lora_A.weight!.shape[0] ? lora.lora_A.weight : lora.lora_A.weight[..Rank];
        var b = Rank == lora.lora_B.weight!.shape[1] ? lora.lora_B.weight : lora.lora_B.weight[.., ..Rank];
        return y + F.linear(F.linear(lora.dropout.forward(x), a), b);
    }
}

/// <summary>NOAH's LoRA factors (A Kaiming-uniform, B zero, no bias) and input dropout 0.1.</summary>
public sealed class NoahLora : nn.Module
{
    public Linear lora_A;
    public Linear lora_B;
    public ParallelDropout dropout;

    public NoahLora(long inFeatures, long outFeatures, int rank) : base("NoahLora")
    {
        lora_A = Linear(inFeatures, rank, hasBias: false);
        lora_B = Linear(rank, outFeatures, hasBias: false);
        using (no_grad())
        {
            init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
            init.zeros_(lora_B.weight!);
        }
        dropout = new ParallelDropout(0.1);
        RegisterComponents();
    }
}

/// <summary>NOAH applied to one ViT: the blocks' modules, the supernet training and search (its pre-pass), the
/// chosen subnet.</summary>
public sealed class NoahApplied : AppliedTuner, IPrePass
{
    /// <summary>The authors' supernet optimiser settings (slurm_train_vtab.sh: lr 5e-4, weight decay 1e-4).</summary>
    public const double SupernetLr = 5e-4, SupernetWeightDecay = 1e-4;

    readonly VisionTransformer vit;
    readonly List<NoahBlock> blocks;
    readonly List<NoahQkv> qkvs;
    readonly Dictionary<string, double> metrics = new();

    internal NoahApplied(TunerMethod method, Hyperparameters h, TunableEncoder encoder, VisionTransformer vit, NoahSpace space,
                         List<NoahBlock> blocks, List<NoahQkv> qkvs) : base(method, h, encoder)
    {
        this.vit = vit;
        Space = space;
        this.blocks = blocks;
        this.qkvs = qkvs;
    }

    public NoahSpace Space { get; }
    public NoahSubnet Subnet { get; private set; } = null!;
    /// <summary>The widest width, the supernet's (and the modules' initialisation scale).</summary>
    int Widest => Space.Widths[^1];

    public string PrePassName => "NOAH supernet training and evolutionary search";
    public bool Selected { get; private set; }
    public void MarkSelected() => Selected = true;
    public IReadOnlyDictionary<string, double> PrePassMetrics => metrics;
    public IEnumerable<Tensor> SelectionTensors() => blocks.Select(b => b.Dims);

    public override IEnumerable<Parameter> TrainableParameters() =>
        blocks.SelectMany(b => b.parameters()).Concat(qkvs.SelectMany(q => q.Lora?.parameters() ?? Enumerable.Empty<Parameter>()));

    public override void Detach()
    {
        foreach (var block in Encoder.Blocks) block.Tuners.Remove(block, "noah");
    }

    /// <summary>Builds the modules of <paramref name="subnet"/> (fresh), or, as the supernet, modules at the widest
    /// width sampled at the subnet's widths.</summary>
    internal void Configure(NoahSubnet subnet, bool supernet)
    {
        var device = vit.pos_embed.device;
        for (int i = 0; i < blocks.Count; i++)
        {
            var (p, r, a) = subnet.Block(i);
            blocks[i].Build(supernet ? Widest : p, supernet ? Widest : a, Widest, device);
            qkvs[i].Build(supernet ? Widest : r, device);
        }
        Sample(subnet);
        if (supernet) return;
        Subnet = subnet;
        using (no_grad())
            for (int i = 0; i < blocks.Count; i++)
            {
                var (p, r, a) = subnet.Block(i);
                blocks[i].Dims.copy_(tensor(new long[] { p, r, a }));
            }
    }

    void Sample(NoahSubnet subnet)
    {
        for (int i = 0; i < blocks.Count; i++)
        {
            var (p, r, a) = subnet.Block(i);
            blocks[i].Sample = (p, r, a);
            qkvs[i].Rank = r;
        }
    }

    public void LoadSelection(IReadOnlyList<(Tensor Buffer, Tensor Saved, string Name)> saved, string where)
    {
        var dims = blocks.Select(b =>
        {
            var (_, value, name) = saved.Single(s => ReferenceEquals(s.Buffer, b.Dims));
            if (!value.shape.SequenceEqual(new long[] { 3 }) || value.dtype != int64)
                throw new PeftSharpException($"{where}: selection '{name}' must hold 3 int64 widths (prompts, LoRA rank, adapter)");
            var w = value.data<long>().ToArray();
            if (w.Any(x => x < 0 || x > 100_000)) throw new PeftSharpException($"{where}: selection '{name}' holds a width outside 0..100000");
            return w.Select(x => (int)x).ToArray();
        }).ToList();
        Configure(new NoahSubnet(dims.Select(d => d[0]).ToArray(), dims.Select(d => d[1]).ToArray(), dims.Select(d => d[2]).ToArray()), supernet: false);
    }

    /// <summary>Trains the supernet on the first four fifths of the training split, searches on the last fifth, and
    /// builds the chosen subnet fresh from the random state the pass found. The head trains with the supernet and is
    /// put back afterwards, as is every base parameter's trainability.</summary>
    public void RunPrePass(PrePassData data)
    {
        using var rngState = get_rng_state();
        var head = vit.head.parameters().ToList();
        var headValues = head.Select(p => p.detach().clone()).ToList();
        var parameters = vit.parameters().ToList();
        var wasTrainable = parameters.Select(p => p.requires_grad).ToList();
        bool wasTraining = vit.training;
        var indices = data.Train.Indices;
        int searchImages = indices.Count / 5;
        if (searchImages == 0 || indices.Count - searchImages < 1)
            throw new PeftSharpException($"method 'noah': the training split has {indices.Count} images; the search needs at least 5 (four fifths train the supernet, one fifth scores subnets)");
        var supernetImages = indices.Take(indices.Count - searchImages).ToList();
        var searchSplit = indices.Skip(indices.Count - searchImages).ToList();
        var watch = Stopwatch.StartNew();
        NoahSearch.Result result;
        try
        {
            Configure(Space.Uniform(Widest), supernet: true);
            foreach (var p in parameters) p.requires_grad = false;
            var trained = TrainableParameters().Concat(head).ToList();
            foreach (var p in trained) p.requires_grad = true;
            TrainSupernet(data, supernetImages, trained);
            double supernetSeconds = watch.Elapsed.TotalSeconds;
            vit.eval();
            var rng = new Random(data.Seed);
            result = NoahSearch.Run(Space, Hypers.Int("limit"), s => Score(s, data, searchSplit), rng,
                                    Hypers.Int("population"), Hypers.Int("generations"));
            metrics["noah_supernet_seconds"] = supernetSeconds;
            metrics["noah_search_seconds"] = watch.Elapsed.TotalSeconds - supernetSeconds;
            metrics["noah_search_val_top1"] = result.Score;
            metrics["noah_subnets_scored"] = result.Scored;
            metrics["noah_params"] = result.Params;
        }
        finally
        {
            using (no_grad())
                for (int i = 0; i < head.Count; i++) head[i].copy_(headValues[i]);
            foreach (var p in parameters) p.grad = null;
            for (int i = 0; i < parameters.Count; i++) parameters[i].requires_grad = wasTrainable[i];
            vit.train(wasTraining);
        }
        set_rng_state(rngState);
        Configure(result.Best, supernet: false);
        Selected = true;
    }

    /// <summary>supernet_train_prompt.py in 'super' mode: per step a random subnet, cross-entropy, AdamW under timm's
    /// cosine with warm-up (the authors' 10 of 500 epochs, in proportion), full batches only; the backbone in eval mode
    /// (its drop-path off), NOAH's dropouts on.</summary>
    void TrainSupernet(PrePassData data, List<int> images, List<Parameter> trained)
    {
        int epochs = Hypers.Int("supernet_epochs");
        int batch = Math.Min(data.Train.Options.BatchSize, images.Count);
        var schedule = new CosineSchedule(SupernetLr, epochs, (int)Math.Round(epochs * 10 / 500.0));
        var optimizer = optim.AdamW(trained, lr: SupernetLr, weight_decay: SupernetWeightDecay);
        vit.eval();
        foreach (var b in blocks) b.train();
        foreach (var q in qkvs) q.train();
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            foreach (var group in optimizer.ParamGroups) group.LearningRate = schedule.LearningRate(epoch);
            var rng = new Random(SuiteRng.GeneratorSeed(data.Seed, epoch, 0x4E4F4148));
            var order = images.OrderBy(_ => rng.Next()).ToList();
            foreach (var batchData in data.Train.Unaugmented(order, batch, dropLast: true))
                using (batchData)
                using (var scope = NewDisposeScope())
                {
                    Sample(Space.Random(rng));
                    optimizer.zero_grad();
                    var logits = vit.forward(batchData.Images.to(data.Device));
                    var loss = F.cross_entropy(logits, batchData.Labels.to(data.Device));
                    if (!double.IsFinite(loss.item<float>()))
                        throw new PeftSharpException($"method 'noah': the supernet's training diverged at epoch {epoch + 1} (lr {SupernetLr:G3})");
                    loss.backward();
                    optimizer.step();
                }
        }
        optimizer.zero_grad();
    }

    /// <summary>Top-1 (%) of the supernet sampled at <paramref name="subnet"/> on the search images (eval mode).</summary>
    double Score(NoahSubnet subnet, PrePassData data, List<int> images)
    {
        Sample(subnet);
        long correct = 0;
        using var _ = inference_mode();
        foreach (var batch in data.Train.Unaugmented(images, 2 * data.Train.Options.BatchSize))
            using (batch)
            using (var scope = NewDisposeScope())
                correct += vit.forward(batch.Images.to(data.Device)).argmax(1).cpu().eq(batch.Labels).sum().item<long>();
        return 100.0 * correct / images.Count;
    }
}
