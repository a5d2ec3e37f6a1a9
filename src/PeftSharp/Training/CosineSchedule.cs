namespace PeftSharp.Training;

/// <summary>
/// timm's CosineLRScheduler as the unifying study configures it, stepped once per epoch: linear warm-up from
/// <see cref="WarmupLr"/> over <see cref="WarmupEpochs"/> epochs (warmup_prefix=False, so the cosine is evaluated at
/// the absolute epoch), then lr_min + ½(lr_max − lr_min)(1 + cos(π t / T)) with T = total epochs, and lr_min after T.
/// </summary>
public sealed record CosineSchedule(double BaseLr, int Epochs, int WarmupEpochs = 10, double WarmupLr = 1e-6, double MinLr = 1e-5) : ILearningRateSchedule
{
    public double LearningRate(int epoch)
    {
        if (epoch < WarmupEpochs) return WarmupLr + epoch * (BaseLr - WarmupLr) / WarmupEpochs;
        if (epoch >= Epochs) return MinLr;
        return MinLr + 0.5 * (BaseLr - MinLr) * (1 + Math.Cos(Math.PI * epoch / Epochs));
    }
}

/// <summary>
/// Per-step linear warm-up from 0 to <see cref="BaseLr"/> over <see cref="WarmupSteps"/> steps, then a cosine over the
/// remaining steps to <see cref="MinLr"/> (timm's warmup_prefix=True form; what the shipped backbone was pretrained with).
/// </summary>
public sealed record WarmupThenCosine(double BaseLr, int Steps, int WarmupSteps, double MinLr) : ILearningRateSchedule
{
    public double LearningRate(int step) =>
        step < WarmupSteps ? BaseLr * (step + 1) / WarmupSteps
                           : MinLr + 0.5 * (BaseLr - MinLr) * (1 + Math.Cos(Math.PI * (step - WarmupSteps) / Math.Max(1, Steps - WarmupSteps)));
}
