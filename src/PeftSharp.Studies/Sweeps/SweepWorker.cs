using PeftSharp.Results;
using PeftSharp.Training;
using TorchSharp;

namespace PeftSharp.Sweeps;

/// <summary>How a worker takes work: which plan, how many runs, how long a lease lasts.</summary>
public sealed record WorkerOptions
{
    /// <summary>Only this plan's runs (null: any plan's).</summary>
    public string? Plan { get; init; }
    /// <summary>Stop after this many runs (null: when no run is pending or running any more).</summary>
    public int? MaxRuns { get; init; }
    /// <summary>A run whose worker has not heartbeaten for this long goes back to pending. Heartbeats come every third of it.</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>How long to wait before looking again when nothing is pending but other workers' runs are still open.</summary>
    public TimeSpan Poll { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Who this worker is in the queue (host:pid, unique among live workers).</summary>
    public string WorkerId { get; init; } = $"{Environment.MachineName}:{Environment.ProcessId}";
}

/// <summary>What a worker did.</summary>
public sealed record WorkerSummary(int Claimed, int Finished, int Failed, int LeasesLost)
{
    /// <summary>Runs given back to the queue after a native libtorch error (<see cref="SweepWorker.TriesAgain"/>).</summary>
    public int Retried { get; init; }
}

/// <summary>
/// A worker: claims one pending run at a time, trains it through <see cref="RunExecutor"/> (so the result and its
/// predictions land in one transaction, and a run already finished is reused) while a timer renews its lease, marks
/// the queue row, and repeats until nothing is left. A worker that dies leaves its row 'running' until the lease runs
/// out; <see cref="WorkQueue.Refresh"/> (which every worker runs before each claim) then hands it to another.
/// </summary>
public sealed partial class SweepWorker
{
    readonly WorkQueue queue;
    readonly RunExecutor executor;
    readonly WorkerOptions options;
    readonly Action<string> log;
    /// <summary>The plan of the last run: it keeps its stage's data for the next run of that stage, and frees it when
    /// the worker moves to another sweep (one sweep's data in memory at a time).</summary>
    ISweepPlan? lastPlan;

    public SweepWorker(WorkQueue queue, torch.Device device, WorkerOptions options, IRunObserver? observer = null, Action<string>? log = null)
    {
        this.queue = queue;
        this.options = options;
        this.log = log ?? (_ => { });
        executor = new RunExecutor(queue.Store, device, observer);
    }

    public WorkerSummary Run(CancellationToken cancel = default)
    {
        int claimed = 0, finished = 0, failed = 0, lost = 0, retried = 0;
        try
        {
            while (options.MaxRuns is not { } max || claimed < max)
            {
                cancel.ThrowIfCancellationRequested();
                queue.Refresh();
                var item = queue.Claim(options.WorkerId, options.Lease, options.Plan);
                if (item == null)
                {
                    if (queue.OpenWork(options.Plan) == 0) break;
                    cancel.WaitHandle.WaitOne(options.Poll);   // others' runs are open: they may fail back or grow the sweep
                    continue;
                }
                claimed++;
                var outcome = Work(item);
                if (outcome == QueueStatus.Finished) finished++;
                else if (outcome == QueueStatus.Failed) failed++;
                else if (outcome == QueueStatus.Pending) retried++;
                else lost++;
            }
            queue.Refresh();   // the last search run may have completed a sweep: queue its final runs for whoever comes next
        }
        finally
        {
            queue.ReleasePlanData();
        }
        return new WorkerSummary(claimed, finished, failed, lost) { Retried = retried };
    }

    /// <summary>Runs one claimed item; Running stands for "the lease was lost, another worker has it now".</summary>
    QueueStatus Work(QueueItem item)
    {
        log($"claimed {item.Stage.ToString().ToLowerInvariant()} run {item.RunKey[..12]} of {item.SweepId} (attempt {item.Attempts})");
        using var heartbeat = new Timer(_ => Beat(item), null, HeartbeatPeriod, HeartbeatPeriod);
        try
        {
            var video = WorkVideo(item, out var keyError);
            if (keyError != null) return Failed(item, keyError);
            if (video != null)
            {
                heartbeat.Dispose();
                if (!queue.Complete(item, options.WorkerId, video)) return LeaseLost(item);
                return video.Status == RunStatus.Finished ? QueueStatus.Finished : QueueStatus.Failed;
            }
            var plan = queue.PlanOf(item.SweepId);
            if (lastPlan != null && !ReferenceEquals(lastPlan, plan)) lastPlan.Dispose();
            lastPlan = plan;
            // Consecutive runs of one stage share the plan's data (a classification stage's loaders).
            var request = plan.Job(item.Stage, item.Point, item.Seed);
            if (request.Spec.Key != item.RunKey)
                return Failed(item, $"the run rebuilt from sweep {item.SweepId} has key {request.Spec.Key[..12]}, the queue expected {item.RunKey[..12]} " +
                                    "(the task files, the checkpoint or PeftSharp changed since the plan); plan it again");
            var record = executor.Execute(request, plan.Label(item.Stage, item.Point, item.Seed));
            heartbeat.Dispose();
            if (!queue.Complete(item, options.WorkerId, record)) return LeaseLost(item);
            return record.Status == RunStatus.Finished ? QueueStatus.Finished : QueueStatus.Failed;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            heartbeat.Dispose();
            // A result the store refused because another worker took the key over is that worker's to finish.
            if (e is InvalidOperationException && !StillMine(item)) return LeaseLost(item);
            string error = e is PeftSharpException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            if (TriesAgain(e, item.Attempts, queue.MaxAttempts))
            {
                log($"run {item.RunKey[..12]} hit a native error on attempt {item.Attempts}; back to the queue: {error.Split('\n')[0]}");
                return queue.Release(item, options.WorkerId, error) ? QueueStatus.Pending : LeaseLost(item);
            }
            return Failed(item, error);
        }
    }

    /// <summary>Whether a run that threw <paramref name="e"/> goes back to the queue: libtorch's own errors
    /// (<see cref="RunExecutor.IsNativeError"/>), up to the queue's attempts. The executor already trains such a run
    /// again; this covers what happens before it, such as loading a stage's data (a linear probe's search run of the
    /// standard profile failed so, in a <c>div</c> before its run began). A failed search run would leave its grid
    /// point out of the selection. Bad input (PeftSharpException) and everything else fails at once.</summary>
    public static bool TriesAgain(Exception e, int attempts, int maxAttempts) => RunExecutor.IsNativeError(e) && attempts < maxAttempts;

    TimeSpan HeartbeatPeriod => options.Lease / 3;

    void Beat(QueueItem item)
    {
        try
        {
            if (!queue.Heartbeat(item, options.WorkerId, options.Lease)) log($"lease on {item.RunKey[..12]} lost: another worker has it");
        }
        catch (Exception e)   // a timer callback must not throw; the next beat tries again
        {
            log($"heartbeat failed: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
        }
    }

    bool StillMine(QueueItem item) => queue.Heartbeat(item, options.WorkerId, options.Lease);

    QueueStatus Failed(QueueItem item, string error)
    {
        log($"run {item.RunKey[..12]} failed: {error}");
        return queue.Fail(item, options.WorkerId, error) ? QueueStatus.Failed : LeaseLost(item);
    }

    QueueStatus LeaseLost(QueueItem item)
    {
        log($"run {item.RunKey[..12]}: the lease ran out before it was recorded; another worker has it");
        return QueueStatus.Running;
    }
}
