using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PeftSharp.Dense;
using PeftSharp.Tests.Dense;

namespace PeftSharp.Tests.Cli;

/// <summary>Dense train and eval through the real program: the saved adapter scores what training printed, and bad
/// input or a mismatched adapter is one line naming the file and field, exit code 2.</summary>
public class DenseCliTests
{
    static string[] Train(string data, string dir, params string[] more) =>
        new[] { "train", "--data", data, "--method", "lora", "--checkpoint", TestFiles.VitCheckpoint, "--epochs", "1", "--batch-size", "4",
                "--db", Path.Combine(dir, "results.db"), "--quiet" }.Concat(more).ToArray();

    static string Miou(string stdout) => Regex.Match(stdout, @"mIoU [0-9.]+%").Value;

    [Fact]
    public void Eval_of_the_saved_adapter_prints_the_score_train_printed()
    {
        string data = DenseTestData.Small(DenseSuite.Segmentation, 4), dir = TestFiles.TempDir("dense-cli"), adapter = Path.Combine(dir, "adapter");
        var train = CliRunner.Run(Train(data, dir, "--head", "linear", "--save-adapter", adapter));
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.Matches(@"mIoU [0-9.]+% \(aAcc [0-9.]+%\) on test", train.Stdout);
        var eval = CliRunner.Run("eval", "--adapter", adapter, "--data", data);
        Assert.True(eval.ExitCode == 0, eval.Stderr + eval.Stdout);
        Assert.Equal(Miou(train.Stdout), Miou(eval.Stdout));
        Assert.Contains("background", eval.Stdout);   // the per-class table, by the adapter's class names

        // The adapter is a segmentation model: a detection folder is refused.
        var wrong = CliRunner.Run("eval", "--adapter", adapter, "--data", DenseTestData.Small(DenseSuite.Detection, 2));
        Assert.Equal(2, wrong.ExitCode);
        CliRunner.AssertOneLineError(wrong, "dense_config.json: a dense-seg adapter, but");
    }

    [Theory]
    [InlineData("bbox", "[60, 0, 10, 4]", "annotations[0].bbox")]
    [InlineData("category_id", "99", "annotations[0].category_id")]
    public void A_bad_coco_annotation_stops_train_in_one_line(string field, string value, string where)
    {
        string data = DenseTestData.Small(DenseSuite.Detection, 2), dir = TestFiles.TempDir("dense-cli-bad");
        string json = CocoDataset.AnnotationFile(data, "train");
        var coco = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
        coco["annotations"]![0]![field] = JsonNode.Parse(value);
        File.WriteAllText(json, coco.ToJsonString());
        var r = CliRunner.Run(Train(data, dir));
        Assert.Equal(2, r.ExitCode);
        CliRunner.AssertOneLineError(r, json);
        Assert.Contains(where, r.Stderr);
    }

    [Fact]
    public void A_classification_task_given_to_task_says_how_to_train_it()
    {
        var r = CliRunner.Run(["train", "--task", "digits", "--method", "lora"]);
        Assert.Equal(2, r.ExitCode);
        CliRunner.AssertOneLineError(r, "suite materialize --out DIR --tasks digits, then train --data DIR/digits");
    }

    [Fact]
    public void A_mask_with_a_class_beyond_the_classes_stops_train_in_one_line()
    {
        string data = DenseTestData.Small(DenseSuite.Segmentation, 2), dir = TestFiles.TempDir("dense-cli-mask");
        File.WriteAllLines(Path.Combine(data, SegmentationFolder.ClassesFile), File.ReadAllLines(Path.Combine(data, SegmentationFolder.ClassesFile)).Take(3));
        var r = CliRunner.Run(Train(data, dir));
        Assert.Equal(2, r.ExitCode);
        CliRunner.AssertOneLineError(r, "is beyond the 3 classes");
        Assert.Contains(Path.Combine(data, "annotations", "train"), r.Stderr);
    }

    [Fact]
    public void Sweep_plan_queues_dense_runs_for_a_dense_folder()
    {
        string data = DenseTestData.Small(DenseSuite.Segmentation, 2), dir = TestFiles.TempDir("dense-cli-sweep");
        var r = CliRunner.Run("sweep", "plan", "--db", Path.Combine(dir, "results.db"), "--data", data, "--method", "bitfit", "--grid", "none",
                              "--lrs", "1e-3,1e-2", "--wds", "1e-4", "--checkpoint", TestFiles.VitCheckpoint, "--epochs", "1", "--head", "linear", "--head-lr", "3e-2");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("1 sweep(s), 2 run(s) queued", r.Stdout);
        using var db = PeftSharp.Results.ResultsDb.Open(Path.Combine(dir, "results.db"));
        var plan = new PeftSharp.Sweeps.WorkQueue(db).PlanOf(Assert.Single(new PeftSharp.Sweeps.WorkQueue(db).Progress()).SweepId);
        Assert.Equal(new PeftSharp.Training.DenseSweep(64, "linear", 3e-2), plan.Spec.Dense);
        Assert.Equal("dense-seg", plan.RunSpec(PeftSharp.Results.RunStage.Search, 0, 42).Family);
    }
}
