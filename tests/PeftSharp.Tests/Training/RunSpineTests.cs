using PeftSharp.Results;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Tests.Tuners;
using TorchSharp.Modules;
using static PeftSharp.Tests.Results.ResultsTestData;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

/// <summary>The run spine: one training-step core, any family's job through the one executor.</summary>
public sealed class RunSpineTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-spine");

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    [Fact]
    public void A_step_is_adamw_at_the_scheduled_rate_with_clipping()
    {
        // One scalar w = 1, loss 3w: gradient 3, clipped to norm 1.5 → g = 1.5. AdamW's first step (bias-corrected)
        // moves w by lr · m̂/(√v̂ + eps) = lr · sign(g) after decoupled decay w ← w(1 − lr·wd).
        var w = new Parameter(ones(1));
        using var steps = new OptimizerSteps([w], lr: 0.1, weightDecay: 0.5, new CosineSchedule(0.1, 4, 2, 0.02, 0.0), gradClip: 1.5);
        Assert.Equal(0.02, steps.Schedule(0), 12);   // warm-up's first epoch
        Assert.Equal(0.06, steps.Schedule(1), 12);
        double loss = steps.Step(() => w * 3, "step 1");
        Assert.Equal(3.0, loss, 6);
        Assert.Equal(1.5, w.grad!.item<float>(), 5);
        double expected = 1.0 * (1 - 0.06 * 0.5) - 0.06 * 1.5 / (Math.Sqrt(1.5 * 1.5) + 1e-8);
        Assert.Equal(expected, w.item<float>(), 5);
    }

    [Fact]
    public void A_non_finite_loss_is_refused_naming_the_step_and_rate_before_any_update()
    {
        var w = new Parameter(ones(2));
        using var steps = new OptimizerSteps([w], 1e-2, 0, new ConstantSchedule(1e-2), what: "CLIP training");
        steps.Schedule(0);
        var e = Assert.Throws<PeftSharpException>(() => steps.Step(() => (w * float.PositiveInfinity).sum(), "epoch 2, step 7"));
        Assert.Equal("CLIP training diverged: loss is ∞ at epoch 2, step 7 (learning rate 0.01); lower the learning rate (lr) or clip gradients (grad_clip)",
                     e.Message.Replace("Infinity", "∞"));
        Assert.Equal(new[] { 1f, 1f }, w.data<float>().ToArray());
        Assert.StartsWith(Trainer.DivergedMessage, Assert.Throws<PeftSharpException>(() =>
            new OptimizerSteps([w], 1e-2, 0, new ConstantSchedule(1e-2)).Step(() => w.sum() / 0f * 0f, "step 1")).Message);
    }

    [Fact]
    public void Nothing_to_train_is_an_error()
    {
        var e = Assert.Throws<PeftSharpException>(() => new OptimizerSteps([], 1e-3, 0, new ConstantSchedule(1e-3)));
        Assert.Contains("nothing to train", e.Message);
    }

    [Fact]
    public void The_pretraining_schedule_warms_up_per_step_then_follows_a_cosine_over_the_rest()
    {
        var s = new WarmupThenCosine(1.0, 10, 4, 0.1);
        Assert.Equal(new[] { 0.25, 0.5, 0.75, 1.0 }, Enumerable.Range(0, 4).Select(s.LearningRate));
        Assert.Equal(1.0, s.LearningRate(4), 12);                                   // t = 0 of 6
        Assert.Equal(0.1 + 0.45 * (1 + Math.Cos(Math.PI / 2)), s.LearningRate(7), 12);   // t = 3 of 6: halfway
    }

    [Fact]
    public void A_family_is_part_of_the_key_except_classification_whose_keys_stay_as_they_were()
    {
        var classification = Spec();
        Assert.DoesNotContain("family", classification.IdentityJson());
        Assert.Equal(classification.Key, (classification with { Family = RunSpec.Classification }).Key);
        var video = classification with { Family = "video" };
        Assert.Contains("\"family\":\"video\"", video.IdentityJson());
        Assert.NotEqual(classification.Key, video.Key);
        Assert.Throws<PeftSharpException>(() => (classification with { Family = " " }).Key);
    }

    /// <summary>A task family the executor has never heard of: it trains a tiny method and scores it with its own
    /// metric. The executor stores it once, under its family, keeps its adapter and never runs it again.</summary>
    sealed class CountingJob(RunSpec spec) : IRunJob
    {
        public int Runs;
        public RunSpec Spec { get; } = spec;
        public string DatasetPath => "/nowhere";

        public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint)
        {
            Runs++;
            var vit = TunerTestKit.Backbone();
            var peft = PeftModel.Create(vit, "lora", new Dictionary<string, string>());
            var outcome = new RunOutcome { Top1 = 0.375, MetricsJson = """{"metric": "miou", "miou": 37.5}""", TrainableParams = peft.CountTrainable() };
            return new RunProduct(outcome, [], peft, folder => AdapterFiles.Save(peft, folder), vit);
        }
    }

    [Fact]
    public void Any_family_runs_once_through_the_executor_and_lands_under_its_family()
    {
        using var db = ResultsDb.Open(Path.Combine(dir, "r.db"));
        var job = new CountingJob(Spec(method: "lora") with { Family = "dense-seg" });
        var executor = new RunExecutor(db, CPU);
        var first = executor.Execute(job, "seg");
        var again = executor.Execute(job, "seg");
        Assert.Equal(1, job.Runs);
        Assert.Equal((RunStatus.Finished, 0.375, "dense-seg"), (first.Status, first.Top1!.Value, first.Spec.Family));
        Assert.Equal(first.Id, again.Id);
        Assert.NotNull(db.FindArtifact(first.Id, RunArtifacts.Adapter));
        Assert.Single(db.Runs(new RunFilter(Family: "dense-seg")));
        Assert.Empty(db.Runs(new RunFilter(Family: RunSpec.Classification)));
    }

    /// <summary>What a stand-in job hands the executor: a linear probe on the test backbone, top-1 0.5.</summary>
    static RunProduct LinearProbeProduct()
    {
        var vit = TunerTestKit.Backbone();
        var peft = PeftModel.Create(vit, "linear", new Dictionary<string, string>());
        return new RunProduct(new RunOutcome { Top1 = 0.5, MetricsJson = "{}", TrainableParams = 0 }, [], peft, null, vit);
    }

    /// <summary>Throws libtorch's kind of error on its first <c>failures</c> runs (as TorchSharp 0.107's freed-Scalar
    /// race does), then trains.</summary>
    sealed class FlakyNativeJob(RunSpec spec, int failures) : IRunJob
    {
        public int Runs;
        public RunSpec Spec { get; } = spec;
        public string DatasetPath => "/nowhere";

        public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint)
        {
            if (++Runs <= failures) throw new System.Runtime.InteropServices.ExternalException("Unknown scalar type");
            return LinearProbeProduct();
        }
    }

    [Fact]
    public void A_native_error_trains_the_run_again_up_to_the_attempts_then_fails_it()
    {
        using var db = ResultsDb.Open(Path.Combine(dir, "r.db"));
        var executor = new RunExecutor(db, CPU) { NativeErrorAttempts = 3 };
        var twice = new FlakyNativeJob(Spec(1, method: "linear"), failures: 2);
        var record = executor.Execute(twice, "flaky");
        Assert.Equal((RunStatus.Finished, 3), (record.Status, twice.Runs));
        Assert.Equal(RunStatus.Finished, db.Runs().Single(r => r.Spec.Key == twice.Spec.Key).Status);

        var always = new FlakyNativeJob(Spec(2, method: "linear"), failures: 99);
        Assert.Throws<System.Runtime.InteropServices.ExternalException>(() => executor.Execute(always, "broken"));
        Assert.Equal(3, always.Runs);
        Assert.Equal(RunStatus.Failed, db.Runs().Single(r => r.Spec.Key == always.Spec.Key).Status);
    }

    /// <summary>Sees whether the executor handed it a checkpoint with something to resume from.</summary>
    sealed class CheckpointProbe(RunSpec spec) : IRunJob
    {
        public bool SawCheckpoint;
        public RunSpec Spec { get; } = spec;
        public string DatasetPath => "/nowhere";

        public RunProduct Run(Device device, IProgress<TrainProgress>? progress, TrainCheckpoint? checkpoint)
        {
            SawCheckpoint = Directory.Exists(checkpoint!.Directory) && Directory.EnumerateFileSystemEntries(checkpoint.Directory).Any();
            return LinearProbeProduct();
        }
    }

    [Fact]
    public void Without_resume_a_begun_run_drops_its_old_checkpoint_but_a_run_another_process_holds_keeps_it()
    {
        using var db = ResultsDb.Open(Path.Combine(dir, "r.db"));
        var root = Path.Combine(dir, "checkpoints");
        var spec = Spec(method: "linear");
        string Leftover(RunSpec s)
        {
            string folder = Path.Combine(root, s.Key);
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "epoch.safetensors"), "left by a killed attempt");
            return folder;
        }

        // Another process holds the run: an executor that must not resume waits and leaves that process's checkpoint.
        string held = Leftover(spec);
        var other = db.TryBeginRun(spec, new RunContext { DatasetPath = "/nowhere", CodeVersion = "test" }, "elsewhere:1:1", TimeSpan.FromMinutes(5));
        Assert.True(other.Begun);
        var waiting = new RunExecutor(db, CPU, checkpointRoot: root) { Resume = false, Poll = TimeSpan.FromMilliseconds(20) };
        var probe = new CheckpointProbe(spec);
        var waiter = Task.Run(() => waiting.Execute(probe, "held"));
        Thread.Sleep(200);
        Assert.True(File.Exists(Path.Combine(held, "epoch.safetensors")));
        db.FinishRun(other.Id, new RunOutcome { Top1 = 0.25, MetricsJson = "{}", TrainableParams = 0 }, []);
        Assert.Equal(0.25, waiter.Result.Top1);
        Assert.False(probe.SawCheckpoint);

        // A run it begins itself starts from scratch; with resume (the default) the checkpoint is handed on.
        var fresh = Spec(1, method: "linear");
        Leftover(fresh);
        var scratch = new CheckpointProbe(fresh);
        new RunExecutor(db, CPU, checkpointRoot: root) { Resume = false }.Execute(scratch, "fresh");
        Assert.False(scratch.SawCheckpoint);
        var resumed = Spec(2, method: "linear");
        Leftover(resumed);
        var carried = new CheckpointProbe(resumed);
        new RunExecutor(db, CPU, checkpointRoot: root).Execute(carried, "resumed");
        Assert.True(carried.SawCheckpoint);
    }
}
