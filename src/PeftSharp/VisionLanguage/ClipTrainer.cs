using PeftSharp.Interop;
using System.Diagnostics;
using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.VisionLanguage;

/// <summary>What a CLIP model is trained for: matching images to their captions, or to their class prompts.</summary>
public enum ClipObjective { Contrastive, Classification }

/// <summary>How a CLIP fine-tuning run trains: a fixed number of optimiser steps (so runs on 10 or 1000 pairs get the
/// same compute), AdamW with linear warm-up then cosine decay to zero per step, gradient clipping.</summary>
public sealed record ClipTrainOptions
{
    public ClipObjective Objective { get; init; } = ClipObjective.Contrastive;
    public int Steps { get; init; } = 150;
    public int BatchSize { get; init; } = 32;
    public double Lr { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 1e-4;
    public int WarmupSteps { get; init; } = 10;
    public double GradClip { get; init; } = 1.0;
    public int Seed { get; init; } = 42;
    public Normalization Normalization { get; init; } = Normalization.Inception;
    /// <summary>The towers' products run in this precision (bf16: libtorch autocast); the losses stay float32.</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    public ClipTrainOptions Validate()
    {
        if (Steps < 1) throw new PeftSharpException($"CLIP training: steps must be >= 1 (got {Steps})");
        if (BatchSize < 2) throw new PeftSharpException($"CLIP training: batch size must be >= 2 (got {BatchSize}); a contrastive batch needs negatives");
        if (!(Lr > 0) || !double.IsFinite(Lr)) throw new PeftSharpException($"CLIP training: lr must be a positive number (got {Lr})");
        if (WeightDecay < 0 || WarmupSteps < 0 || !(GradClip > 0)) throw new PeftSharpException("CLIP training: weight decay and warm-up must be >= 0 and gradient clipping > 0");
        return this;
    }

    /// <summary>The settings that determine a run's result (for its run key).</summary>
    public JsonObject ToJson()
    {
        var json = new JsonObject
        {
            ["objective"] = Objective.ToString().ToLowerInvariant(), ["steps"] = Steps, ["warmup_steps"] = WarmupSteps,
            ["grad_clip"] = GradClip, ["normalization"] = Normalization.Name, ["schedule"] = "cosine-per-step",
        };
        // Only a non-default precision enters the run key, so the float32 runs stored before it existed still match.
        if (Precision != Precision.Float32) json["precision"] = Autocast.Name(Precision);
        return json;
    }
}

public sealed record ClipTrainResult(double FinalLoss, IReadOnlyList<double> Losses, double Seconds, double PairsPerSecond);

/// <summary>
/// Trains the trainable parameters of a <see cref="PeftModel"/> over a <see cref="ClipModel"/> on a caption set:
/// contrastive (each batch's captions are its negatives; repeated captions count as positives) or classification
/// (image features against the class prompts' text features, recomputed every step so a tuned text tower learns).
/// </summary>
public sealed class ClipTrainer
{
    readonly PeftModel peft;
    readonly ClipModel clip;
    readonly ClipTrainOptions options;

    public ClipTrainer(PeftModel peft, ClipTrainOptions options)
    {
        this.peft = peft;
        clip = peft.Root as ClipModel ?? throw new PeftSharpException("the CLIP trainer needs a PeftModel over a CLIP model");
        this.options = options.Validate();
        // A pre-pass (GPS, SCT, SPT, NOAH) reads an image classifier's training split and head; CLIP training has
        // neither, so such a method would train its data-free default selection: refused, not silently done.
        if (peft.NeedsPrePass)
            throw new PeftSharpException($"method '{peft.MethodSpec}': its pre-pass ({string.Join(", ", peft.PrePasses.Select(p => p.PrePassName))}) reads an image classifier's training split, which CLIP training does not have");
    }

    public ClipTrainResult Fit(CaptionSet train, IProgress<(int Step, int Steps, double Loss)>? progress = null)
    {
        if (options.Objective == ClipObjective.Classification && !train.IsClassification)
            throw new PeftSharpException($"{train.Name}: classification training needs labels and class prompts");
        var parameters = peft.TrainableParameters().Select(p => p.Parameter).ToList();
        if (parameters.Count == 0) throw new PeftSharpException($"nothing to train: '{peft.MethodSpec}' has no trainable parameters on the chosen towers");
        var device = clip.logit_scale.device;
        using var steps = new OptimizerSteps(parameters, options.Lr, options.WeightDecay, new CosineSchedule(options.Lr, options.Steps, options.WarmupSteps, 0, 0),
                                             options.GradClip, "CLIP training");
        int context = clip.Config.Text.ContextLength;
        var batches = new BatchOrder(train.Count, Math.Min(options.BatchSize, train.Count), options.Seed);
        // The set is fixed, so its captions (or class prompts) are tokenized once, not every step.
        using var captionTokens = options.Objective == ClipObjective.Contrastive ? CaptionSet.Tokenize(train.Captions, context, out _) : null;
        using var classTokens = options.Objective == ClipObjective.Classification ? CaptionSet.Tokenize(train.ClassPrompts!, context, out _).to(device) : null;
        var losses = new List<double>();
        var watch = Stopwatch.StartNew();
        clip.train();
        for (int step = 0; step < options.Steps; step++)
        {
            steps.Schedule(step);
            var indices = batches.Next();
            double value = steps.Step(() =>
            {
                Tensor images, texts;
                using (Autocast.Enter(options.Precision, device))
                {
                    images = clip.EncodeImage(train.Images(indices, options.Normalization, device));
                    texts = clip.EncodeText(options.Objective == ClipObjective.Contrastive
                        ? captionTokens!.index(tensor(indices.Select(i => (long)i).ToArray())).to(device)
                        : classTokens!);
                }
                (images, texts) = (images.to(float32), texts.to(float32));
                if (options.Objective == ClipObjective.Contrastive)
                    return ClipLosses.Contrastive(images, texts, clip.logit_scale, indices.Select(i => train.Groups[i]).ToArray());
                var labels = tensor(indices.Select(i => (long)train.Labels![i]).ToArray(), device: device);
                return F.cross_entropy(ClipLosses.ClassLogits(images, texts, clip.logit_scale), labels);
            }, $"step {step + 1}");
            losses.Add(value);
            progress?.Report((step + 1, options.Steps, value));
        }
        clip.eval();
        double seconds = watch.Elapsed.TotalSeconds;
        return new ClipTrainResult(losses[^1], losses, seconds, (double)options.Steps * batches.BatchSize / Math.Max(seconds, 1e-9));
    }

    /// <summary>Batches of distinct indices drawn epoch by epoch from seeded permutations (the last partial batch of
    /// an epoch is completed from the next one).</summary>
    sealed class BatchOrder(int count, int batchSize, int seed)
    {
        readonly Random rng = new(seed);
        readonly Queue<int> pending = new();
        public int BatchSize => batchSize;

        public int[] Next()
        {
            var batch = new List<int>(batchSize);
            while (batch.Count < batchSize)
            {
                if (pending.Count == 0)
                    foreach (int i in Enumerable.Range(0, count).OrderBy(_ => rng.Next())) pending.Enqueue(i);
                int next = pending.Dequeue();
                if (!batch.Contains(next)) batch.Add(next);
            }
            return batch.ToArray();
        }
    }
}
