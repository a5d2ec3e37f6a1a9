using System.Text.Json.Nodes;
using PeftSharp.Dense;
using PeftSharp.Results;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Dense;

/// <summary>A dense run through the spine's executor: stored with its family and metric name, reused when asked again.</summary>
public class DenseRunTests
{
    [Fact]
    public void A_dense_run_lands_in_the_results_store_with_its_family_and_is_reused()
    {
        string dir = TestFiles.TempDir("dense-run");
        var task = DenseTask.Open(DenseTestData.Small(DenseSuite.Segmentation, 8));
        var train = new TrainOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 8, Lr = 1e-3, DropPath = 0 };
        var job = DenseRunRequest.Create(task, "lora", null, train, new BackboneSpec(null, null, TestFiles.VitCheckpoint), "train", "val", 64,
                                         segHead: "linear", trainImages: 8, evalImages: 8);
        Assert.Equal("dense-seg", job.Spec.Family);
        using var db = ResultsDb.Open(Path.Combine(dir, "results.db"));
        var executor = new RunExecutor(db, CPU);
        var first = executor.Execute(job, "dense lora");
        Assert.Equal(RunStatus.Finished, first.Status);
        var metrics = JsonNode.Parse(first.Outcome!.MetricsJson)!;
        Assert.Equal("miou", metrics["metric"]!.GetValue<string>());
        Assert.Equal(first.Outcome.Top1, metrics["miou"]!.GetValue<double>(), 12);
        Assert.Equal(11, metrics["class_iou"]!.AsObject().Count);
        // LoRA rank 8 on the fused qkv of the fixture's 2 blocks of width 64: A 8×64 and B 192×8 per block (the
        // method's parameters alone; the head's are in the metrics).
        Assert.Equal(2 * (8 * 64 + 192 * 8), first.Outcome.TrainableParams);
        var again = executor.Execute(job, "dense lora");
        Assert.Equal(first.Id, again.Id);
    }
}
