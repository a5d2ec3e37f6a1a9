using System.Diagnostics;
using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Interop;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Dense;

/// <summary>What training a dense model did: the epoch losses, the time, and the peak of the C heap during training
/// above what it held before the first step (activations, gradients and optimizer state: V-PETL's training memory).</summary>
public sealed record DenseTrainResult(IReadOnlyList<double> EpochLosses, double Seconds, double ImagesPerSecond, long? PeakTrainingBytes);

/// <summary>A dense evaluation: the primary metric as a fraction (mIoU or AP), every figure as JSON, the predictions
/// (class maps or detections) per image, and the time.</summary>
public sealed record DenseEvaluation(double Primary, JsonObject Metrics, IReadOnlyList<byte[]>? ClassMaps, IReadOnlyList<List<Detection>>? Detections, double Seconds);

/// <summary>
/// Trains a <see cref="DenseModel"/>: the PEFT method's parameters in the backbone and the whole head, through the
/// spine's <see cref="OptimizerSteps"/> (AdamW over those tensors only, a per-step warm-up and cosine,
/// clipping, the divergence guard, a native step scope); segmentation by pixel cross-entropy
/// (255 ignored), detection by FCOS's losses. Frozen leading blocks run without autograd.
/// </summary>
public sealed class DenseTrainer
{
    readonly DenseModel model;
    readonly PeftModel peft;
    readonly TrainOptions options;
    readonly Device device;
    readonly Normalization normalization;

    readonly double? headLr;

    /// <param name="headLr">The head's learning rate (null: the options' lr, as the method's tensors).</param>
    public DenseTrainer(DenseModel model, PeftModel peft, TrainOptions options, Device device, double? headLr = null)
    {
        if (headLr is double h && !(h > 0 && double.IsFinite(h))) throw new PeftSharpException("head_lr", $"the head's learning rate must be a positive number (got {h})");
        this.headLr = headLr;
        // A pre-pass (GPS, SCT, SPT, NOAH) reads an image classifier's training split and loss; dense runs have neither,
        // so such a method would train its data-free default selection: refused, not silently done.
        if (peft.NeedsPrePass)
            throw new PeftSharpException($"method '{peft.MethodSpec}': its pre-pass ({string.Join(", ", peft.PrePasses.Select(p => p.PrePassName))}) reads an image classifier's training split, which dense runs do not have");
        this.model = model;
        this.peft = peft;
        this.options = options.Validate();
        this.device = device;
        normalization = Normalization.FromName(options.Normalization);
        FirstTrainableBlock = FindFirstTrainableBlock(peft);
    }

    public int FirstTrainableBlock { get; }

    /// <summary>The method's backbone tensors and every head tensor, the head set trainable.</summary>
    public List<Parameter> TrainableParameters()
    {
        foreach (var p in model.decode_head.parameters()) p.requires_grad = true;
        return peft.TrainableParameters().Select(p => p.Parameter).Concat(model.decode_head.parameters()).ToList();
    }

    /// <summary>Trains for the options' epochs. With a <paramref name="checkpoint"/>, the state after each epoch (the
    /// method's tensors, the head, AdamW's moments, the RNG) is saved there and a run that finds one resumes after its
    /// last epoch, to the same result as a run that was never interrupted.</summary>
    public DenseTrainResult Fit(DenseSplit train, IProgress<TrainProgress>? progress = null, TrainCheckpoint? checkpoint = null, CancellationToken cancel = default)
    {
        int perEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
        foreach (var parameter in model.decode_head.parameters()) parameter.requires_grad = true;
        var method = peft.TrainableParameters().Select(p => p.Parameter).ToList();
        var head = model.decode_head.parameters().ToList();
        // The head trains at its own rate when one is given: its ReLU towers die at the rates the method's few tensors want.
        using var steps = OptimizerSteps.Grouped(new (IReadOnlyList<Parameter>, double)[] { (method, 1.0), (head, (headLr ?? options.Lr) / options.Lr) },
                                             options.Lr, options.WeightDecay, Schedule(options, perEpoch), options.GradClip);
        var losses = new List<double>();
        var headState = HeadState();
        if (checkpoint?.TryRestore(peft, steps.Optimizer, out int start, losses, out _, headState) != true) start = 0;
        var watch = Stopwatch.StartNew();
        long images = 0;
        NativeHeap.CollectStepGarbage();
        long? baseline = NativeHeap.AllocatedBytes(device.type), peak = baseline;
        for (int epoch = start; epoch < options.Epochs; epoch++)
        {
            model.train();
            var order = Order(train.Count, epoch);
            double sum = 0;
            for (int step = 0; step < perEpoch; step++)
            {
                cancel.ThrowIfCancellationRequested();
                double lr = steps.Schedule(epoch * perEpoch + step);
                var batch = order[(step * options.BatchSize)..Math.Min(order.Length, (step + 1) * options.BatchSize)];
                // The heap is sampled once the forward pass holds every activation its backward needs.
                double value = steps.Step(() =>
                {
                    var loss = Loss(train, batch);
                    peak = Max(peak, NativeHeap.AllocatedBytes(device.type));
                    return loss;
                }, $"epoch {epoch + 1}, step {step + 1}");
                peak = Max(peak, NativeHeap.AllocatedBytes(device.type));
                sum += value;
                images += batch.Length;
                progress?.Report(new TrainProgress(epoch + 1, options.Epochs, step + 1, perEpoch, value, lr, images / Math.Max(watch.Elapsed.TotalSeconds, 1e-9)));
            }
            losses.Add(sum / Math.Max(1, perEpoch));
            checkpoint?.Save(peft, steps.Optimizer, epoch + 1, losses, outside: headState);
        }
        model.eval();
        double seconds = watch.Elapsed.TotalSeconds;
        return new DenseTrainResult(losses, seconds, images / Math.Max(seconds, 1e-9), peak is long p && baseline is long b0 ? p - b0 : null);
    }

    /// <summary>The learning rate per step: a linear warm-up over the warm-up epochs' steps, then a cosine to the
    /// minimum. Dense runs here are a few epochs long, where a per-epoch schedule moves in coarse jumps (and a warm-up
    /// epoch would hold a whole epoch at the warm-up lr).</summary>
    public static WarmupThenCosine Schedule(TrainOptions options, int stepsPerEpoch) =>
        new(options.Lr, options.Epochs * stepsPerEpoch, Math.Min(options.WarmupEpochs, options.Epochs) * stepsPerEpoch, options.MinLr);

    /// <summary>The head's tensors under their state-dict names (prefix "decode_head."), as a checkpoint keeps them.</summary>
    Dictionary<string, Tensor> HeadState() =>
        model.decode_head.state_dict().ToDictionary(kv => "decode_head." + kv.Key, kv => kv.Value);

    static long? Max(long? a, long? b) => a is long x && b is long y ? Math.Max(x, y) : a ?? b;

    /// <summary>The epoch's example order: a permutation drawn from the run's seed and the epoch alone.</summary>
    int[] Order(int count, int epoch)
    {
        var order = Enumerable.Range(0, count).ToArray();
        new Random(SuiteRng.GeneratorSeed(options.Seed, epoch, 0x44454E53)).Shuffle(order);
        return order;
    }

    Tensor Loss(DenseSplit split, int[] batch)
    {
        var images = split.Images(batch, normalization).to(device);
        if (model.Kind == DenseKind.Segmentation)
        {
            var logits = model.SegmentationLogits(images, FirstTrainableBlock);
            return F.cross_entropy(logits, split.ClassMaps(batch).to(device), ignore_index: SegmentationFolder.Ignore);
        }
        var outputs = model.DetectionOutputs(images, FirstTrainableBlock);
        return Fcos.Loss(outputs, batch.Select(i => split.Objects![i]).ToList());
    }

    /// <summary>Scores the model on a split (eval mode, no autograd): mmsegmentation's mIoU or COCO box AP.</summary>
    public static DenseEvaluation Evaluate(DenseModel model, DenseSplit split, Normalization normalization, Device device, int batchSize = 64)
    {
        model.eval();
        var watch = Stopwatch.StartNew();
        using var _ = inference_mode();
        var maps = new List<byte[]>();
        var detections = new List<List<Detection>>();
        for (int start = 0; start < split.Count; start += batchSize)
        {
            using var scope = NativeHeap.StepScope(device.type);
            var batch = Enumerable.Range(start, Math.Min(batchSize, split.Count - start)).ToArray();
            var images = split.Images(batch, normalization).to(device);
            if (model.Kind == DenseKind.Segmentation)
            {
                var predicted = model.SegmentationLogits(images).argmax(1).to(uint8).cpu();
                var bytes = predicted.data<byte>().ToArray();
                int plane = split.Size * split.Size;
                for (int b = 0; b < batch.Length; b++) maps.Add(bytes[(b * plane)..((b + 1) * plane)]);
            }
            else detections.AddRange(Fcos.Decode(model.DetectionOutputs(images), split.Size, split.Size));
        }
        if (model.Kind == DenseKind.Segmentation)
        {
            var metrics = new SegmentationMetrics(split.ClassNames.Count);
            for (int i = 0; i < split.Count; i++) metrics.Add(maps[i], split.Labels![i]);
            double miou = metrics.MeanIoU;
            return new DenseEvaluation(double.IsNaN(miou) ? 0 : miou, metrics.ToJson(split.ClassNames), maps, null, watch.Elapsed.TotalSeconds);
        }
        var summary = CocoEvaluator.Evaluate(split.Objects!, detections, split.ClassNames.Count);
        return new DenseEvaluation(Math.Max(0, summary.AP), summary.ToJson(), null, detections, watch.Elapsed.TotalSeconds);
    }

    static int FindFirstTrainableBlock(PeftModel peft)
    {
        int first = peft.Vit.Config.Depth;
        foreach (var (name, _) in peft.TrainableParameters())
        {
            if (name.StartsWith("norm.", StringComparison.Ordinal) || name.StartsWith("fc_norm.", StringComparison.Ordinal) || peft.IsHeadName(name)) continue;
            var parts = name.Split('.');
            if (parts[0] != "blocks" || !int.TryParse(parts[1], out int block)) return 0;
            first = Math.Min(first, block);
        }
        return first;
    }
}
