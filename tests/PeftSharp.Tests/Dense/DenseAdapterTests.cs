using PeftSharp.Dense;
using PeftSharp.Results;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Dense;

/// <summary>A trained dense model saved and loaded again scores exactly what training reported (merged or not), and a
/// dense run interrupted after an epoch resumes to the result of a run that never stopped.</summary>
public class DenseAdapterTests
{
    static readonly Lazy<string> Data = new(() => DenseTestData.Small(DenseSuite.Segmentation, 4));

    static DenseRunRequest Job(TrainOptions train, string method = "lora") =>
        DenseRunRequest.Create(DenseTask.Open(Data.Value), method, null, train, new BackboneSpec(null, null, TestFiles.VitCheckpoint), "train", "test", 64, segHead: "uper");

    [Fact]
    public void The_saved_adapter_evaluates_to_the_training_score_exactly_merged_or_not()
    {
        string dir = TestFiles.TempDir("dense-adapter-run"), adapter = Path.Combine(dir, "adapter");
        var job = Job(new TrainOptions { Epochs = 2, WarmupEpochs = 0, BatchSize = 2, Lr = 3e-3, DropPath = 0.1 });
        using var db = ResultsDb.Open(Path.Combine(dir, "results.db"));
        var record = new RunExecutor(db, CPU).Execute(job, "dense lora", (product, r) =>
        {
            product.SaveAdapter(adapter);
            return r;
        });
        Assert.Equal(RunStatus.Finished, record.Status);

        var info = DenseAdapter.ReadInfo(adapter);
        Assert.Equal(DenseKind.Segmentation, info.Kind);
        Assert.Equal(("uper", 64, 11), (info.Head, info.ImageSize, info.ClassNames.Count));
        var test = job.Task.Split("test", info.ImageSize);
        var (model, peft, _) = DenseAdapter.Load(adapter, TestFiles.VitCheckpoint);
        using (model)
        {
            var unmerged = DenseTrainer.Evaluate(model, test, info.Normalization, CPU);
            // The same number through two paths: the run's stored score and a fresh model from the files.
            Assert.Equal(record.Top1!.Value, unmerged.Primary);
            Assert.Equal(System.Text.Json.Nodes.JsonNode.Parse(record.Outcome!.MetricsJson)!["aacc"]!.GetValue<double>(), unmerged.Metrics["aacc"]!.GetValue<double>());
            peft.MergeAndUnload();
            Assert.DoesNotContain(model.backbone.named_modules(), m => m.name.Contains("lora", StringComparison.Ordinal));
            var merged = DenseTrainer.Evaluate(model, test, info.Normalization, CPU);
            Assert.Equal(unmerged.Primary, merged.Primary);
            Assert.Equal(unmerged.ClassMaps!.SelectMany(m => m), merged.ClassMaps!.SelectMany(m => m));
        }
    }

    [Fact]
    public void An_adapter_is_refused_on_another_base_in_one_line()
    {
        string dir = TestFiles.TempDir("dense-adapter-base"), adapter = Path.Combine(dir, "adapter");
        var job = Job(new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 8, Lr = 1e-3, DropPath = 0 }, "bitfit");
        using (var product = DenseRuns.Train(job, CPU)) DenseRuns.SaveAdapter(product, job, adapter);
        string other = Path.Combine(dir, "other.safetensors");
        var bytes = File.ReadAllBytes(TestFiles.VitCheckpoint);
        bytes[^1] ^= 1;   // another file: same shapes, other content
        File.WriteAllBytes(other, bytes);
        var e = Assert.Throws<PeftSharpException>(() => DenseAdapter.Load(adapter, other));
        Assert.Contains("adapter_config.json: the adapter was trained on another base", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>Stops a run by throwing from its progress report at a given step (the report is synchronous).</summary>
    sealed class StopAt(int epoch, int step) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress p)
        {
            if (p.Epoch == epoch && p.Step == step) throw new OperationCanceledException("stopped for the test");
        }
    }

    [Fact]
    public void An_interrupted_dense_run_resumes_to_the_uninterrupted_result()
    {
        string dir = TestFiles.TempDir("dense-resume");
        // Two steps per epoch, drop path on (the RNG state must come back too).
        var job = Job(new TrainOptions { Epochs = 3, WarmupEpochs = 1, BatchSize = 2, Lr = 3e-3, DropPath = 0.1 });
        static Dictionary<string, Tensor> Weights(DenseRunProduct p) =>
            p.Model.decode_head.state_dict().Select(kv => ("decode_head." + kv.Key, kv.Value))
             .Concat(p.Peft.TrainableParameters().Select(t => (t.Name, (Tensor)t.Parameter))).ToDictionary(kv => kv.Item1, kv => kv.Item2);

        // DenseRuns.Train is what the job's Run (the executor's entry) trains with.
        using var straight = DenseRuns.Train(job, CPU, null, new TrainCheckpoint(Path.Combine(dir, "straight")));
        var interrupted = new TrainCheckpoint(Path.Combine(dir, "interrupted"));
        Assert.Throws<OperationCanceledException>(() => DenseRuns.Train(job, CPU, new StopAt(epoch: 3, step: 1), interrupted));
        Assert.True(File.Exists(Path.Combine(interrupted.Directory, "trainable.safetensors")));
        using var resumed = DenseRuns.Train(job, CPU, new StopAt(epoch: 1, step: 1), interrupted);   // epochs 1–2 are not run again

        Assert.Equal(straight.Evaluation.Primary, resumed.Evaluation.Primary);
        Assert.Equal(straight.Training.EpochLosses, resumed.Training.EpochLosses);
        var a = Weights(straight);
        var b = Weights(resumed);
        Assert.Contains(a.Keys, k => k.StartsWith("decode_head.fpn_bottleneck.", StringComparison.Ordinal));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a) Assert.True(t.eq(b[name]).all().item<bool>(), $"{name} differs after resuming");
    }
}
