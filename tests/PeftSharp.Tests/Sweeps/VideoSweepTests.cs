using PeftSharp.Results;
using PeftSharp.Sweeps;
using PeftSharp.Training;
using PeftSharp.Video;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Sweeps;

/// <summary>Video sweeps through the queue: planned into SQLite, run by a worker, stored as video runs with the keys
/// (and results) the same runs have when executed directly.</summary>
public class VideoSweepTests
{
    [Fact]
    public void A_worker_runs_a_video_plan_and_stores_its_runs()
    {
        var task = VideoTasks.Ensure("video-appearance", TestFiles.TempDir("peftsharp-video-sweep"), 1, 1, 1);
        var spec = new VideoSweepSpec
        {
            TaskDirectory = task.Directory, Method = "bitfit", Lrs = [1e-2, 3e-2], Seeds = [7],
            Checkpoint = TestFiles.Data("videomae_tiny.safetensors"), Inflate = false, Frames = 4, Tubelet = 2, Size = 32,
            Train = new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 5, EvalBatchSize = 10, Normalization = "inception", DropPath = 0 },
        };
        using var db = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "results.db"));
        var queue = new WorkQueue(db);
        var planned = queue.Plan("video-plan", [spec]);
        Assert.Equal((1, 2, 0), (planned.SweepIds.Count, planned.Queued, planned.AlreadyQueued));
        Assert.Equal(0, queue.Plan("video-plan", [spec]).Queued);   // planning again queues nothing new

        var summary = SweepTestKit.Drain(queue, "video-plan");
        Assert.Equal((2, 2, 0), (summary.Claimed, summary.Finished, summary.Failed));
        var progress = Assert.Single(queue.Progress("video-plan"));
        Assert.True(progress.Done);
        Assert.Equal(2, progress.Count(RunStage.Final));
        Assert.All(db.Runs(), r => Assert.Equal(RunStage.Single, r.Spec.Stage));

        var runs = db.Runs().Where(r => r.Status == RunStatus.Finished).OrderBy(r => r.Id).ToList();
        Assert.Equal(2, runs.Count);
        Assert.All(runs, r => Assert.Equal("video", r.Spec.Family));
        Assert.Equal(new[] { 0.01, 0.03 }, runs.Select(r => r.Spec.Lr));

        // The worker's run is the run a direct execution makes: the same key and the same test top-1.
        var plan = queue.VideoPlanOf(planned.SweepIds[0])!;
        using var direct = ResultsDb.Open(Path.Combine(TestFiles.TempDir(), "direct.db"));
        var record = new RunExecutor(direct, CPU).Execute(plan.Job(1, 7), "direct");
        Assert.Equal(runs[1].Key, record.Key);
        Assert.Equal(runs[1].Top1, record.Top1);
    }
}
