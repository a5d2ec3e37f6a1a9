using System.Reflection;
using System.Text.Json.Nodes;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Training;

/// <summary>Everything one run needs: its identity, the backbone, the method and the data.</summary>
public sealed record RunRequest(
    RunSpec Spec, BackboneSpec Backbone, IReadOnlyDictionary<string, string> Settings, TrainOptions Train,
    DataLoader TrainData, DataLoader EvalData, int NumClasses, string DatasetPath) : IPrePassJob
{
    /// <summary>The fine-tuning this run is (what the library trains; the spec only adds the run's identity).</summary>
    public TrainingRequest Training => new(Backbone, Spec.Method, Settings, Train, TrainData, EvalData, NumClasses, Spec.Seed);

    /// <summary>What the model sees of an image in this run (evaluation applies the same).</summary>
    public Data.Preprocessing Preprocessing => Training.Preprocessing;

    /// <inheritdoc cref="TrainingRequest.SaveAdapter"/>
    public void SaveAdapter(PeftModel model, string directory) => Training.SaveAdapter(model, directory);

    /// <summary>Trains and scores the classifier (<see cref="TrainedRun.Train"/>): top-1 and every example's logits.</summary>
    public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint) => Run(device, progress, checkpoint, null);

    /// <inheritdoc cref="Run(Device, IProgress{TrainProgress}?, TrainCheckpoint?)"/>
    public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint, IPrePassStore? prePasses)
    {
        var run = TrainedRun.Train(Training, device, progress, checkpoint, prePasses);
        var (peft, trained, evaluation) = (run.Peft, run.Training, run.Evaluation);
        var metrics = evaluation.Metrics.ToJson();
        RunProduct.AddTraining(metrics, trained, peft);
        var outcome = new RunOutcome
        {
            Top1 = evaluation.Metrics.Top1 / 100.0, MetricsJson = metrics.ToJsonString(),
            TrainableParams = peft.CountTrainable(), TrainSeconds = trained.Seconds, EvalSeconds = evaluation.Seconds,
            ImagesPerSecond = trained.ImagesPerSecond,
        };
        return new RunProduct(outcome, RunExecutor.Predictions(evaluation), peft, dir => SaveAdapter(peft, dir), run) { Evaluation = evaluation };
    }
}

/// <summary>Hears what a run executor does (the CLI draws progress bars from it).</summary>
public interface IRunObserver
{
    void RunStarting(RunSpec spec, string label);
    void RunSkipped(RunRecord finished, string label);
    void Training(TrainProgress progress);
    void RunFinished(RunRecord record, string label);
    void RunFailed(RunSpec spec, string label, string error);

    /// <summary>Another process (<paramref name="owner"/>) is training this run: this one waits for its result.</summary>
    void RunWaiting(RunSpec spec, string label, string? owner) { }
}

/// <summary>
/// Executes runs against the results database: a finished run with the same key is reused, never retrained; a run
/// killed mid-way resumes from its last epoch checkpoint; the result (metrics, every example's logits) lands in one
/// transaction, so an interruption loses at most the run in flight. A run being trained holds a lease, renewed by a
/// heartbeat: another process (or executor) asking for the same run waits for its owner's result instead of training
/// it twice, and takes it over only when the lease runs out (the owner died). The trained adapter is kept as an
/// artefact of the run (<see cref="KeepWeights"/>).
/// </summary>
public sealed class RunExecutor
{
    readonly IResultsStore db;
    readonly Device device;
    readonly string checkpointRoot;
    readonly IRunObserver? observer;

    public RunExecutor(IResultsStore db, Device device, IRunObserver? observer = null, string? checkpointRoot = null)
    {
        this.db = db;
        this.device = device;
        this.observer = observer;
        // Beside a SQLite file; for a database server, under the working directory (on a cluster, put it on a shared
        // file system so a reclaimed run resumes where its dead worker stopped).
        this.checkpointRoot = checkpointRoot ?? Path.Combine(db.LocalFolder ?? Environment.CurrentDirectory, "peftsharp-checkpoints");
    }

    /// <summary>False: a run that is not finished in the database is an error naming it, not trained (for reading
    /// studies out of an existing database).</summary>
    public bool TrainMissing { get; init; } = true;

    /// <summary>False: a run this executor begins starts from scratch, discarding an epoch checkpoint a killed earlier
    /// attempt left. Only a run whose lease this executor holds is touched: a run another process is training keeps its
    /// checkpoint.</summary>
    public bool Resume { get; init; } = true;

    /// <summary>Which finished runs store their trained weights in the results store (default: adapters, not full
    /// fine-tuning's whole model).</summary>
    public KeepWeights KeepWeights { get; init; } = KeepWeights.Adapters;

    /// <summary>How long a run stays this executor's without a heartbeat; heartbeats come every third of it. Past it,
    /// another process takes the run over, so it must be well above the longest pause a live process can have.</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How often a process waiting for another's run looks whether it finished.</summary>
    public TimeSpan Poll { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Who holds the leases of this executor's runs (host:pid:n, unique among live executors).</summary>
    public string Owner { get; init; } = $"{Environment.MachineName}:{Environment.ProcessId}:{Interlocked.Increment(ref executors)}";

    static int executors;

    /// <summary>How many times one Execute trains a run that keeps failing with a native libtorch error
    /// (<see cref="IsNativeError"/>); each retry resumes from the run's last epoch checkpoint.</summary>
    public int NativeErrorAttempts { get; init; } = 3;

    /// <summary>libtorch's own errors, as TorchSharp raises them. In a run that trains fine otherwise they have come from
    /// TorchSharp 0.107 itself: a <c>Scalar</c> argument (made implicitly from a number, as in <c>x.mul_(0.5)</c> and
    /// inside its optimizers) has a finalizer, and a collection another thread starts (a heartbeat, a loader) can free
    /// it while the native call it was handed still reads it: "Unknown scalar type", or a failed
    /// <c>Scalar::toDouble</c> check. In the standard profile 2 of the first 130 runs failed so.</summary>
    public static bool IsNativeError(Exception e) => e is System.Runtime.InteropServices.ExternalException;

    /// <summary>Where per-run epoch checkpoints live (one folder per run key, deleted when the run finishes).</summary>
    public string CheckpointRoot => checkpointRoot;

    public static string CodeVersion { get; } =
        typeof(RunExecutor).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>Runs (or reuses) one run; a training failure is recorded and returned as a failed record. A run another
    /// live process is training is waited for: its finished (or failed) record is returned.</summary>
    public RunRecord Execute(IRunJob job, string label, Func<RunProduct, RunRecord, RunRecord>? after = null)
    {
        var spec = job.Spec;
        var context = new RunContext { DatasetPath = job.DatasetPath, CodeVersion = CodeVersion };
        long? waitingFor = null;
        int nativeErrors = 0;
        while (true)
        {
            if (db.TryGetFinished(spec.Key) is RunRecord done)
            {
                observer?.RunSkipped(done, label);
                return done;
            }
            if (!TrainMissing)
                throw new PeftSharpException($"{db.Location}: no finished run for {label} ({spec.Method} on {spec.Dataset}, {spec.TrainSplit}, lr {spec.Lr:G3}), and training missing runs is off");
            var start = db.TryBeginRun(spec, context, Owner, Lease);
            if (start.Begun)
            {
                try
                {
                    if (Train(job, label, start.Id, after) is { } record) return record;
                }
                catch (Exception e) when (IsNativeError(e) && ++nativeErrors < NativeErrorAttempts)
                {
                    // Stored as failed; the next TryBeginRun replaces it and the epoch checkpoint resumes it.
                    observer?.RunFailed(spec, label, $"{e.GetType().Name}: {e.Message.Split('\n')[0]} (a native error; training it again, attempt {nativeErrors + 1} of {NativeErrorAttempts})");
                }
                continue;   // retried, or our lease ran out and another process took the run over: wait for it like anyone else
            }
            if (start.Status != RunStatus.Running) continue;   // it finished just now
            if (waitingFor != start.Id) observer?.RunWaiting(spec, label, start.Owner);
            waitingFor = start.Id;
            Thread.Sleep(Poll);
            if (db.TryGetRun(start.Id) is { Status: RunStatus.Failed } failed)
            {
                observer?.RunFailed(spec, label, failed.Error ?? "failed");
                return failed;
            }
        }
    }

    /// <summary>Trains, evaluates and stores run <paramref name="id"/> under a heartbeat; null when its lease was lost
    /// (another process replaced the run, so this result was not stored).</summary>
    RunRecord? Train(IRunJob job, string label, long id, Func<RunProduct, RunRecord, RunRecord>? after)
    {
        var spec = job.Spec;
        observer?.RunStarting(spec, label);
        var checkpoint = new TrainCheckpoint(Path.Combine(checkpointRoot, spec.Key));
        if (!Resume) checkpoint.Delete();
        bool stored = false;
        try
        {
            using var heartbeat = new LeaseHeartbeat(db, id, Owner, Lease);
            var progress = observer == null ? null : new Progress(observer);
            // A method's pre-pass runs once per grid: a job that can take it from the store (and keep it there) is given it.
            using var product = job is IPrePassJob withPass
                ? withPass.Run(device, progress, checkpoint, new PrePassRuns(db, spec, job.DatasetPath))
                : job.Run(device, progress, checkpoint);
            heartbeat.Dispose();
            if (!FinishOrLose(id, product.Outcome, product.Predictions)) return null;
            stored = true;
            checkpoint.Delete();
            if (product.HasAdapter && KeepWeights.Keeps(spec.Method)) StoreAdapter(id, product);
            var record = db.TryGetRun(id)!;
            observer?.RunFinished(record, label);
            return after?.Invoke(product, record) ?? record;
        }
        catch (PeftSharpException e) when (!stored)
        {
            db.FailRun(id, e.Message);
            observer?.RunFailed(spec, label, e.Message);
            return db.TryGetRun(id)!;
        }
        catch (Exception e) when (!stored && e is not OperationCanceledException)
        {
            db.FailRun(id, $"{e.GetType().Name}: {e.Message}");
            throw;
        }
    }

    /// <summary>Stores the result; false when the run is gone because another process took it over (our lease ran
    /// out while we were stalled), which is not an error: that process's result will be read instead.</summary>
    bool FinishOrLose(long id, RunOutcome outcome, IReadOnlyList<Prediction> predictions)
    {
        try
        {
            db.FinishRun(id, outcome, predictions);
            return true;
        }
        catch (InvalidOperationException) when (db.TryGetRun(id) is null)
        {
            return false;
        }
    }

    /// <summary>The trained adapter as the run's artefact. One call saves the folder, so what is kept is exactly what
    /// <c>--save-adapter</c> writes.</summary>
    void StoreAdapter(long id, RunProduct product)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"peftsharp-adapter-{Environment.ProcessId}-{id}-{Guid.NewGuid():N}");
        try
        {
            product.SaveAdapter(folder);
            db.PutArtifact(id, RunArtifacts.Adapter, RunArtifacts.PackFolder(folder));
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Stores an evaluation that trained nothing (a model evaluated again, on another split or with other
    /// weights) as a finished run of <paramref name="spec"/>, with its metrics and every prediction, in one
    /// transaction; an evaluation already stored under the same key is returned as it is.</summary>
    public static RunRecord RecordEvaluation(IResultsStore db, RunSpec spec, EvaluationResult evaluation, string datasetPath, long trainableParams = 0)
    {
        long id = BeginRecording(db, spec, new RunContext { DatasetPath = datasetPath, CodeVersion = CodeVersion }, out var done);
        if (done != null) return done;
        var outcome = new RunOutcome
        {
            Top1 = evaluation.Metrics.Top1 / 100, MetricsJson = evaluation.Metrics.ToJson().ToJsonString(),
            TrainableParams = trainableParams, EvalSeconds = evaluation.Seconds,
        };
        db.FinishRun(id, outcome, Predictions(evaluation));
        return db.TryGetRun(id)!;
    }

    /// <summary>Begins the evaluation's run under a short lease (it is stored at once: the evaluation already ran), or
    /// finds it finished, waiting while another process is storing the same evaluation.</summary>
    static long BeginRecording(IResultsStore db, RunSpec spec, RunContext context, out RunRecord? done)
    {
        string owner = $"{Environment.MachineName}:{Environment.ProcessId}:eval";
        while (true)
        {
            done = db.TryGetFinished(spec.Key);
            if (done != null) return done.Id;
            var start = db.TryBeginRun(spec, context, owner, TimeSpan.FromMinutes(1));
            if (start.Begun) return start.Id;
            if (start.Status == RunStatus.Running) Thread.Sleep(200);
        }
    }

    /// <summary>Every example's label, prediction and logits, as the results database stores them.</summary>
    public static List<Prediction> Predictions(EvaluationResult evaluation)
    {
        int classes = evaluation.Logits.GetLength(1);
        var list = new List<Prediction>(evaluation.Labels.Length);
        for (int i = 0; i < evaluation.Labels.Length; i++)
        {
            var row = new float[classes];
            for (int c = 0; c < classes; c++) row[c] = evaluation.Logits[i, c];
            list.Add(new Prediction(evaluation.Indices[i], (int)evaluation.Labels[i], evaluation.Predicted(i), row));
        }
        return list;
    }

    /// <summary>Renews a run's lease every third of its length until disposed. A thread of its own, not a thread-pool
    /// timer: training can keep the pool busy (two cores, a caller blocked in Wait), and a starved timer would let the
    /// lease run out under a live run. A failed renewal is retried by the next beat; a lost lease shows when the
    /// result is stored.</summary>
    sealed class LeaseHeartbeat : IDisposable
    {
        readonly ManualResetEventSlim stop = new();
        readonly Thread thread;

        public LeaseHeartbeat(IResultsStore db, long id, string owner, TimeSpan lease)
        {
            var period = lease / 3;
            thread = new Thread(() =>
            {
                while (!stop.Wait(period))
                {
                    try { db.RenewLease(id, owner, lease); }
                    catch (Exception) { }   // the database is busy or gone: the next beat tries again
                }
            }) { IsBackground = true, Name = $"peftsharp lease {id}" };
            thread.Start();
        }

        /// <summary>Stops the beats and waits for one in flight, so none runs after the result is stored.</summary>
        public void Dispose()
        {
            if (stop.IsSet) return;
            stop.Set();
            thread.Join();
        }
    }

    sealed class Progress : IProgress<TrainProgress>
    {
        readonly IRunObserver observer;
        public Progress(IRunObserver observer) => this.observer = observer;
        public void Report(TrainProgress value) => observer.Training(value);
    }
}
