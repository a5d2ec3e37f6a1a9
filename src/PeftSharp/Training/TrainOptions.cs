namespace PeftSharp.Training;

/// <summary>Training settings; the defaults are the unifying study's VTAB-1K protocol (protocol.md).</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 100;
    public int BatchSize { get; init; } = 64;
    /// <summary>Batch size of evaluation (null: <see cref="BatchSize"/>). Larger batches evaluate small models faster;
    /// the predictions do not depend on it (no layer mixes the images of a batch in eval mode).</summary>
    public int? EvalBatchSize { get; init; }
    public double Lr { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 1e-4;
    public int WarmupEpochs { get; init; } = 10;
    public double WarmupLr { get; init; } = 1e-6;
    public double MinLr { get; init; } = 1e-5;
    public double LabelSmoothing { get; init; }
    /// <summary>Stochastic depth of the backbone during training (the study: 0.1).</summary>
    public double DropPath { get; init; } = 0.1;
    /// <summary>Max global gradient norm; null disables clipping.</summary>
    public double? GradClip { get; init; }
    public int Seed { get; init; } = 42;
    /// <summary>Input normalisation preset: none (the study's VTAB runs), imagenet, inception, clip.</summary>
    public string Normalization { get; init; } = "none";
    /// <summary>RandomResizedCrop + horizontal flip (the many-shot protocol).</summary>
    public bool Augment { get; init; }
    /// <summary>When nothing before the head trains (linear probe), compute the frozen features once and train the
    /// head on them. The frozen backbone then runs in eval mode (no drop-path in frozen layers).</summary>
    public bool CacheFrozenFeatures { get; init; } = true;

    /// <summary>Precision of the matrix products in training and evaluation (bf16: libtorch autocast; parameters, gradients
    /// and optimizer state stay float32).</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    /// <summary>Checkpoint the trained blocks (recompute each block's activations in the backward): far less memory,
    /// about one more forward pass of time; the gradients are the same, so it is not part of a run's key.</summary>
    public bool GradCheckpointing { get; init; }

    public CosineSchedule Schedule => new(Lr, Epochs, Math.Min(WarmupEpochs, Epochs), WarmupLr, MinLr);

    public TrainOptions Validate()
    {
        void Require(bool ok, string message)
        {
            if (!ok) throw new PeftSharpException($"training options: {message}");
        }
        Require(Epochs >= 1, $"epochs must be >= 1 (got {Epochs})");
        Require(BatchSize >= 1, $"batch size must be >= 1 (got {BatchSize})");
        Require(EvalBatchSize is null or >= 1, $"evaluation batch size must be >= 1 (got {EvalBatchSize})");
        Require(Lr > 0 && double.IsFinite(Lr), $"lr must be a positive number (got {Lr})");
        Require(WeightDecay >= 0, $"weight decay must be >= 0 (got {WeightDecay})");
        Require(WarmupEpochs >= 0, $"warm-up epochs must be >= 0 (got {WarmupEpochs})");
        Require(LabelSmoothing >= 0 && LabelSmoothing < 1, $"label smoothing must be in [0, 1) (got {LabelSmoothing})");
        Require(DropPath >= 0 && DropPath < 1, $"drop path must be in [0, 1) (got {DropPath})");
        Require(GradClip is null or > 0, $"gradient clipping must be positive (got {GradClip})");
        return this;
    }
}
