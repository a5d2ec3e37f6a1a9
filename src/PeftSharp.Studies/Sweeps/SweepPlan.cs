using PeftSharp.Dense;
using PeftSharp.Results;
using PeftSharp.Training;

namespace PeftSharp.Sweeps;

/// <summary>
/// The runs one queued tune request stands for, whatever its task family: the grid points, the sweep id, each run's
/// identity and the job a worker executes. A classification request is a <see cref="TunePlan"/>; a request with
/// <see cref="TuneSpec.Dense"/> settings is a <see cref="DenseTunePlan"/>. Consecutive jobs of one stage share that
/// stage's data, which the plan keeps until disposed.
/// </summary>
public interface ISweepPlan : IDisposable
{
    TuneSpec Spec { get; }
    string SweepId { get; }
    int PointCount { get; }
    /// <summary>One configuration leaves nothing to select: it is retrained on the final split directly.</summary>
    bool SkipsSearch { get; }
    int SearchSeed { get; }
    RunSpec RunSpec(RunStage stage, int point, int seed);
    IRunJob Job(RunStage stage, int point, int seed);
    string Label(RunStage stage, int point, int seed);
}

public static class SweepPlans
{
    /// <summary>The plan of a tune request: dense when it carries dense settings, else classification.</summary>
    public static ISweepPlan Create(TuneSpec spec) => spec.Dense != null ? DenseTunePlan.Create(spec) : TunePlan.Create(spec);
}
