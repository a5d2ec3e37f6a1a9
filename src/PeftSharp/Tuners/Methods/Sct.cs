using PeftSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Tuners.Methods;

/// <summary>
/// SCT, salient channel tuning (Zhao et al., "SCT: A Simple Baseline for Parameter-Efficient Fine-Tuning via Salient
/// Channels", IJCV 2023; showlab/SCT, its default <c>sct_attn</c> mode). In every block, on the residual stream after
/// the attention branch (the input of norm2), only N salient channels S are tuned:
/// h[:, S] ← h[:, S] + h[:, S] Wᵀ + b, with W N×N (trunc-normal 0.02) and b = 0; the MLP branch and its residual read
/// the edited stream. Parameters per block N² + N (12·(96² + 96) = 111,744 on ViT-B at N = 96).
/// <para>Pre-pass (the authors' getSalientChannels): the frozen model runs once over the training split, without
/// augmentation, in eval mode; for each block the norm2 input (class token excluded) gives per class the L2 norm of
/// every channel over that class's images and tokens; the class norms are averaged and the top N channels kept.</para>
/// <para>Not mergeable: the edit acts on the residual stream itself, which no weight holds (the authors' qkv/fc2
/// variants would merge; this is their default).</para>
/// </summary>
public sealed class Sct : TunerMethod
{
    public override CapacityKnob? Capacity => new("channels", ["32", "96"], ["16", "32", "64", "96", "192"]);
    public override string Id => "sct";
    public override string Summary => "tunes the N most salient channels (training-split pre-pass) of each block's residual stream";
    public override bool Mergeable => false;
    public override string Reference => "Zhao et al., IJCV 2023 (SCT); showlab/SCT sct_attn mode and channel saliency; V-PETL Bench VTAB-1K 73.59 (19-task mean, best test epoch kept)";

    public override IReadOnlyList<HyperSpec> Hypers => new[]
    {
        HyperSpec.Int("channels", 96, new[] { 32, 64, 96, 128 }, "number of salient channels N tuned per block"),
    };

    public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
    {
        var vit = encoder.RequireVit(Id);
        int channels = h.Int("channels");
        if (channels > encoder.EmbedDim)
            throw new PeftSharpException($"method '{Id}': 'channels' = {channels} exceeds the width {encoder.EmbedDim} of the model");
        var adapters = encoder.Blocks.Select(block =>
        {
            var adapter = new SctChannelAdapter(encoder.EmbedDim, channels);
            block.Attach("sct", adapter, InsertionPoint.BetweenBranches);
            return adapter;
        }).ToList();
        return new Applied(this, h, encoder, vit, adapters);
    }

    /// <summary>Per channel, the class-averaged L2 norm of activations [images, D] given as per-image sums of squares:
    /// for each class c present, sqrt(Σ_{i ∈ c} s_i), then the mean over classes (the authors' saliency).</summary>
    public static Tensor Saliency(Tensor sumsOfSquares, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var (classes, slot, _) = labels.unique(return_inverse: true);
        var perClass = zeros(new[] { classes.shape[0], sumsOfSquares.shape[1] }, dtype: sumsOfSquares.dtype);
        perClass.index_add_(0, slot!, sumsOfSquares, 1);
        return perClass.sqrt().mean(new long[] { 0 }).MoveToOuterDisposeScope();
    }

    /// <summary>The top <paramref name="count"/> channels of a saliency vector, in ascending channel order.</summary>
    public static Tensor TopChannels(Tensor saliency, int count) => saliency.topk(count).indexes.sort().Values;

    sealed class Applied : AppliedTuner, IPrePass
    {
        readonly VisionTransformer vit;
        readonly List<SctChannelAdapter> adapters;

        public Applied(TunerMethod method, Hyperparameters h, TunableEncoder encoder, VisionTransformer vit, List<SctChannelAdapter> adapters)
            : base(method, h, encoder)
        {
            this.vit = vit;
            this.adapters = adapters;
        }

        public string PrePassName => "SCT channel saliency";
        public bool Selected { get; private set; }
        public void MarkSelected() => Selected = true;
        public IEnumerable<Tensor> SelectionTensors() => adapters.Select(a => a.Channels);
        public override IEnumerable<Parameter> TrainableParameters() => adapters.SelectMany(a => a.parameters());

        public override void Detach()
        {
            foreach (var block in Encoder.Blocks) block.Tuners.Remove(block, "sct");
        }

        /// <summary>One eval-mode pass of the frozen model (adapters recording, not editing) over the training split.</summary>
        public void RunPrePass(PrePassData data)
        {
            bool wasTraining = vit.training;
            vit.eval();
            var labels = new List<Tensor>();
            try
            {
                foreach (var a in adapters) a.StartRecording();
                using (no_grad())
                    foreach (var batch in data.Train.Unaugmented())
                        using (batch)
                        using (var scope = NewDisposeScope())
                        {
                            vit.ForwardFeatures(batch.Images.to(data.Device), out _);
                            labels.Add(batch.Labels.clone().DetachFromDisposeScope());
                        }
                using var all = cat(labels.ToArray(), 0);
                foreach (var a in adapters)
                {
                    using var sums = a.StopRecording();
                    using var saliency = Saliency(sums, all);
                    a.Select(TopChannels(saliency, a.Count));
                }
                Selected = true;
            }
            finally
            {
                foreach (var a in adapters) a.StopRecording()?.Dispose();
                foreach (var l in labels) l.Dispose();
                vit.train(wasTraining);
            }
        }
    }
}

/// <summary>One block's salient-channel adapter: x[..., S] += Linear_{N→N}(x[..., S]); S in the buffer "channels".</summary>
public sealed class SctChannelAdapter : BlockTuner
{
    public Linear adapt_linear;
    List<Tensor>? recorded;

    public SctChannelAdapter(int dim, int count) : base("SctChannelAdapter")
    {
        adapt_linear = Linear(count, count);
        InitWeights.TimmLinear(adapt_linear);   // trunc-normal 0.02, zero bias, as the authors' _init_weights
        RegisterComponents();
        // Until the pre-pass selects, the first N channels (a valid default that keeps the module usable without data).
        register_buffer("channels", arange(count, dtype: int64));
    }

    public int Count => (int)adapt_linear.weight!.shape[0];
    public Tensor Channels => get_buffer("channels")!;

    public override bool PrefixTokensStandAlone => true;   // token by token

    public override Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout)
    {
        if (recorded is not null)
        {
            // Pre-pass: per image, the sum over its patch tokens of each channel's square (class token excluded).
            var patches = x[.., layout.PatchStart..].to(float64);
            recorded.Add(patches.pow(2).sum(1).cpu().DetachFromDisposeScope());
            return x;
        }
        var selected = x.index_select(-1, Channels);
        return x.index_add(-1, Channels, adapt_linear.forward(selected), 1);
    }

    internal void StartRecording() => recorded = new List<Tensor>();

    /// <summary>Ends recording; the per-image sums of squares [images, D] (null when not recording).</summary>
    internal Tensor? StopRecording()
    {
        if (recorded is null) return null;
        var list = recorded;
        recorded = null;
        var result = cat(list.ToArray(), 0);
        foreach (var t in list) t.Dispose();
        return result;
    }

    internal void Select(Tensor channels)
    {
        using var _ = no_grad();
        Channels.copy_(channels);
        channels.Dispose();
    }
}
