using PeftSharp.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeftSharp.Training;

/// <summary>A learning rate per tick (an epoch or a step, whichever the trainer schedules by).</summary>
public interface ILearningRateSchedule
{
    double LearningRate(int tick);
}

/// <summary>A constant learning rate (benchmarks that time steps, not schedules).</summary>
public sealed record ConstantSchedule(double Lr) : ILearningRateSchedule
{
    public double LearningRate(int tick) => Lr;
}

/// <summary>
/// The one training-step core of every trainer (classification, CLIP, pretraining, dense, video, perf): AdamW over the
/// tensors that train (only those: AdamW keeps two moments for every tensor it is given), the learning rate from a
/// schedule, gradient clipping, the divergence guard and one native step scope around each step, so a step's
/// temporaries are freed before the next.
/// </summary>
public sealed class OptimizerSteps : IDisposable
{
    /// <summary>How every divergence error starts (callers tell a diverged run from a broken one by it).</summary>
    public const string DivergedMessage = "training diverged";

    readonly ILearningRateSchedule schedule;
    readonly double? gradClip;
    readonly string what;
    /// <summary>Each parameter group's learning rate as a multiple of the schedule's (all 1 unless given).</summary>
    readonly double[] lrScales;

    /// <param name="what">What trains, for the divergence error ("training", "CLIP pretraining").</param>
    public OptimizerSteps(IReadOnlyList<Parameter> parameters, double lr, double weightDecay, ILearningRateSchedule schedule,
                          double? gradClip = null, string what = "training")
    {
        if (parameters.Count == 0) throw new PeftSharpException("nothing to train: the method and head have no trainable parameters");
        Parameters = parameters;
        Optimizer = optim.AdamW(parameters, lr: lr, weight_decay: weightDecay);
        this.schedule = schedule;
        this.gradClip = gradClip;
        this.what = what;
        lrScales = new[] { 1.0 };
        Lr = lr;
    }

    /// <summary>Parameter groups whose learning rates are fixed multiples of the schedule's (a dense head that trains
    /// at its own rate beside the method's tensors); weight decay, clipping and the guard as above.</summary>
    public static OptimizerSteps Grouped(IReadOnlyList<(IReadOnlyList<Parameter> Parameters, double LrScale)> groups, double lr, double weightDecay,
                                         ILearningRateSchedule schedule, double? gradClip = null, string what = "training") =>
        new(groups, lr, weightDecay, schedule, gradClip, what);

    OptimizerSteps(IReadOnlyList<(IReadOnlyList<Parameter> Parameters, double LrScale)> groups, double lr, double weightDecay,
                   ILearningRateSchedule schedule, double? gradClip, string what)
    {
        groups = groups.Where(g => g.Parameters.Count > 0).ToList();
        if (groups.Count == 0) throw new PeftSharpException("nothing to train: the method and head have no trainable parameters");
        Parameters = groups.SelectMany(g => g.Parameters).ToList();
        Optimizer = optim.AdamW(groups.Select(g => new AdamW.ParamGroup(g.Parameters, lr: lr * g.LrScale, weight_decay: weightDecay)), lr: lr, weight_decay: weightDecay);
        this.schedule = schedule;
        this.gradClip = gradClip;
        this.what = what;
        lrScales = groups.Select(g => g.LrScale).ToArray();
        Lr = lr;
    }

    /// <summary>A classifier's training under <see cref="TrainOptions"/>: its per-epoch cosine schedule, weight decay and clipping.</summary>
    public static OptimizerSteps For(IReadOnlyList<Parameter> parameters, TrainOptions options) =>
        new(parameters, options.Lr, options.WeightDecay, options.Schedule, options.GradClip);

    public IReadOnlyList<Parameter> Parameters { get; }

    public AdamW Optimizer { get; }

    /// <summary>The learning rate in force (set by <see cref="Schedule"/>).</summary>
    public double Lr { get; private set; }

    /// <summary>Sets the learning rate of <paramref name="tick"/> (an epoch or a step) and returns it.</summary>
    public double Schedule(int tick)
    {
        Lr = schedule.LearningRate(tick);
        int i = 0;
        foreach (var group in Optimizer.ParamGroups) group.LearningRate = Lr * lrScales[Math.Min(i++, lrScales.Length - 1)];
        return Lr;
    }

    /// <summary>One step: zero the gradients, compute the loss, refuse a non-finite one (naming <paramref name="where"/>
    /// and the learning rate), back-propagate, clip, update. Everything the loss allocates is freed when it returns.</summary>
    /// <returns>The loss's value.</returns>
    public double Step(Func<Tensor> loss, string where)
    {
        using var stepScope = NativeHeap.StepScope(Parameters.FirstOrDefault()?.device_type ?? DeviceType.CPU);
        Optimizer.zero_grad();
        var value = loss();
        double scalar = value.item<float>();
        if (!double.IsFinite(scalar))
            throw new PeftSharpException($"{Diverged}: loss is {scalar} at {where} (learning rate {Lr:G3}); lower the learning rate (lr){(gradClip is null ? " or clip gradients (grad_clip)" : "")}");
        value.backward();
        if (gradClip is double clip) nn.utils.clip_grad_norm_(Parameters, clip);
        Optimizer.step();
        return scalar;
    }

    string Diverged => what == "training" ? DivergedMessage : $"{what} diverged";

    public void Dispose() => Optimizer.Dispose();
}
