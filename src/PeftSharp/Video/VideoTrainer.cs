using PeftSharp.Evaluation;
using System.Diagnostics;
using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Video;

/// <param name="DataWaitSeconds">Time the training thread waited for decoded clips (the rest of Seconds is compute).</param>
/// <param name="PeakRssBytes">The process's peak resident set during training (0 where /proc is unavailable).</param>
public sealed record VideoTrainResult(IReadOnlyList<double> EpochLosses, double Seconds, double DataWaitSeconds, int Steps,
                                      double ClipsPerSecond, long PeakRssBytes, int FirstTrainableBlock)
{
    public double DataMsPerStep => Steps > 0 ? 1000 * DataWaitSeconds / Steps : 0;
    public double StepMs => Steps > 0 ? 1000 * Seconds / Steps : 0;
}

/// <summary>Top-1/top-5 over clips, each clip's class probabilities averaged over its test views (VideoMAE's
/// multi-view testing), and every clip's prediction.</summary>
public sealed record VideoEvaluation(double Top1, double Top5, double Loss, IReadOnlyList<Prediction> Predictions, double Seconds);

/// <summary>
/// Trains a video classifier's trainable parameters through <see cref="OptimizerSteps"/> (AdamW, a per-step warm-up
/// and cosine from <see cref="TrainOptions"/> (<see cref="Schedule"/>), clipping, the divergence guard), clips decoded ahead by the
/// <see cref="ClipLoader"/>. Blocks before the first one with a trainable parameter run without autograd.
/// </summary>
public static class VideoTrainer
{
    public static VideoTrainResult Fit(PeftModel peft, VideoVisionTransformer model, ClipLoader train, TrainOptions options,
                                       Device device, IProgress<TrainProgress>? progress = null, TrainCheckpoint? checkpoint = null)
    {
        var parameters = peft.TrainableParameters().Select(p => p.Parameter).ToList();
        int perEpoch = train.BatchesPerEpoch;
        using var steps = new OptimizerSteps(parameters, options.Lr, options.WeightDecay, Schedule(options, perEpoch), options.GradClip);
        var losses = new List<double>();
        int start = 0;
        if (checkpoint?.TryRestore(peft, steps.Optimizer, out start, losses) != true) start = 0;
        int first = FirstTrainableBlock(peft, model.Config.Depth);
        model.GradCheckpointing = options.GradCheckpointing;
        ProcessMemory.ResetPeakRss();
        double waitBefore = train.WaitSeconds;
        var watch = Stopwatch.StartNew();
        int stepCount = 0;
        long clips = 0;
        for (int epoch = start; epoch < options.Epochs; epoch++)
        {
            model.train();
            double sum = 0;
            int n = 0;
            foreach (var batch in train.Epoch(epoch))
                using (batch)
                {
                    double lr = steps.Schedule(epoch * perEpoch + n);
                    double loss = steps.Step(() => F.cross_entropy(Logits(model, batch.Clips.to(device), first), batch.Labels.to(device),
                                                                   label_smoothing: options.LabelSmoothing), $"epoch {epoch + 1}, step {n + 1}");
                    sum += loss;
                    n++;
                    stepCount++;
                    clips += batch.Size;
                    progress?.Report(new TrainProgress(epoch + 1, options.Epochs, n, train.BatchesPerEpoch, loss, lr,
                                                       clips / Math.Max(watch.Elapsed.TotalSeconds, 1e-9)));
                }
            losses.Add(n > 0 ? sum / n : double.NaN);
            checkpoint?.Save(peft, steps.Optimizer, epoch + 1, losses);
        }
        model.eval();
        double seconds = watch.Elapsed.TotalSeconds;
        return new VideoTrainResult(losses, seconds, train.WaitSeconds - waitBefore, stepCount, clips / Math.Max(seconds, 1e-9),
                                    ProcessMemory.PeakRss(), first);
    }

    /// <summary>The learning rate per step: a linear warm-up over the warm-up epochs' steps, then a cosine to the
    /// minimum (<see cref="WarmupThenCosine"/>). Video runs are a few epochs long: the per-epoch schedule of the image
    /// trainer would hold a whole warm-up epoch at the warm-up lr (1e-6), a fifth of a 5-epoch run learning nothing.</summary>
    public static WarmupThenCosine Schedule(TrainOptions options, int stepsPerEpoch) =>
        new(options.Lr, options.Epochs * stepsPerEpoch, Math.Min(options.WarmupEpochs, options.Epochs) * stepsPerEpoch, options.MinLr);

    /// <summary>Logits of a clip batch; frozen leading blocks run without autograd.</summary>
    static Tensor Logits(VideoVisionTransformer model, Tensor clips, int firstTrainable)
    {
        int depth = model.Config.Depth;
        Tensor tokens;
        TokenLayout layout;
        if (firstTrainable > 0)
        {
            using (no_grad()) tokens = model.ForwardFeatures(clips, out layout, 0, firstTrainable, finalNorm: false);
            tokens = model.ForwardFeatures(tokens, out layout, firstTrainable, depth, layout);
        }
        else tokens = model.ForwardFeatures(clips, out layout, 0, depth);
        return model.ForwardHead(tokens, layout);
    }

    /// <summary>Index of the first block holding a trainable parameter (depth when only the head and final norms train).</summary>
    public static int FirstTrainableBlock(PeftModel peft, int depth)
    {
        int first = depth;
        foreach (var (name, _) in peft.TrainableParameters())
        {
            if (peft.IsHeadName(name) || name.StartsWith("norm.", StringComparison.Ordinal) || name.StartsWith("fc_norm.", StringComparison.Ordinal)) continue;
            var parts = name.Split('.');
            if (parts[0] != "blocks" || !int.TryParse(parts[1], out int block)) return 0;
            first = Math.Min(first, block);
        }
        return first;
    }

    public static VideoEvaluation Evaluate(VideoVisionTransformer model, ClipLoader test, Device device)
    {
        model.eval();
        var watch = Stopwatch.StartNew();
        var predictions = new List<Prediction>();
        int top1 = 0, top5 = 0;
        double loss = 0;
        using var _ = inference_mode();
        foreach (var batch in test.Epoch(0))
            using (batch)
            using (var scope = NewDisposeScope())
            {
                var logits = model.forward(batch.Clips.to(device)).to(float32).cpu();
                var probs = logits.softmax(-1).view(batch.Size, batch.Views, -1).mean(new long[] { 1 });
                var logProbs = probs.clamp_min(1e-12).log();
                loss += F.nll_loss(logProbs, batch.Labels, reduction: nn.Reduction.Sum).item<float>();
                var ranked = probs.argsort(-1, descending: true);
                int k = (int)Math.Min(5, probs.shape[1]);
                var rows = logProbs.data<float>().ToArray();
                var order = ranked.data<long>().ToArray();
                int classes = (int)probs.shape[1];
                for (int i = 0; i < batch.Size; i++)
                {
                    int label = (int)batch.Labels[i].item<long>();
                    var top = order.AsSpan(i * classes, classes);
                    if (top[0] == label) top1++;
                    for (int j = 0; j < k; j++) if (top[j] == label) { top5++; break; }
                    predictions.Add(new Prediction(batch.Indices[i], label, (int)top[0], rows.AsSpan(i * classes, classes).ToArray()));
                }
            }
        int count = predictions.Count;
        return new VideoEvaluation((double)top1 / count, (double)top5 / count, loss / count, predictions.OrderBy(p => p.Index).ToList(), watch.Elapsed.TotalSeconds);
    }
}
