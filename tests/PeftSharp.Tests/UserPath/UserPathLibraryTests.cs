using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Inference;
using PeftSharp.Results;
using PeftSharp.Tests.Cli;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.UserPath;

/// <summary>The user path through the C# API: the run's own evaluation, the saved adapter loaded again, the merged
/// model and its saved file all compute the same predictions.</summary>
public class UserPathLibraryTests
{
    [Fact]
    public void A_saved_adapter_and_its_merged_checkpoint_reproduce_the_run_exactly_through_the_library()
    {
        string root = TestFiles.TempDir("user-path-lib");
        try
        {
            var task = ImageTask.Open(ClassFolders.Create(Path.Combine(root, "photos")));
            var backbone = BackboneSpec.OrShipped(null, null, null);
            var train = new TrainOptions { Epochs = 3, WarmupEpochs = 0, Normalization = ModelCheckpoints.ReadNormalization(backbone.Checkpoint!)! };
            using var run = SingleRun.Create(task, "lora", null, train, backbone);
            var request = run.Request;
            string adapter = Path.Combine(root, "adapter"), merged = Path.Combine(root, "merged.safetensors");
            using var db = ResultsStores.Open(Path.Combine(root, "r.db"));
            var record = new RunExecutor(db, CPU).Execute(request, "lib", (product, r) =>
            {
                product.SaveAdapter(adapter);
                return r;
            });
            var expected = db.Predictions(record.Id).OrderBy(p => p.Index).ToList();

            using (var classifier = Classifier.Load(new ClassifierSource { Adapter = adapter }))
            {
                Assert.Equal(ClassFolders.Names, classifier.ClassNames);
                Assert.Equal("inception", classifier.Preprocessing.Normalization.Name);
                AssertSamePredictions(expected, Evaluate(classifier, task), 1e-5f);
                classifier.MergeAndUnload();
                AssertSamePredictions(expected, Evaluate(classifier, task), 1e-4f);
                classifier.SaveMerged(merged);
            }
            using var reloaded = Classifier.Load(new ClassifierSource { Checkpoint = merged });
            Assert.Equal(ClassFolders.Names, reloaded.ClassNames);
            Assert.Equal("inception", reloaded.Preprocessing.Normalization.Name);
            AssertSamePredictions(expected, Evaluate(reloaded, task), 1e-4f);

            // predict (the same loader over the image files) names what eval counted.
            var files = ImageFiles.Collect(Enumerable.Range(0, task.Test.Count).Select(i => task.Test.EntryPath(i)!));
            var predictions = Predictor.Predict(reloaded, files, topK: 1);
            Assert.Equal(expected.Select(p => ClassFolders.Names[p.Predicted]), predictions.Select(p => p.Top[0].Name));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void A_run_on_changed_images_is_trained_again_not_reused()
    {
        string root = TestFiles.TempDir("user-path-changed");
        try
        {
            string data = ClassFolders.Create(Path.Combine(root, "photos"), perClass: 10);
            string db = Path.Combine(root, "r.db");
            string[] args = ["train", "--data", data, "--method", "linear", "--epochs", "1", "--db", db, "--quiet"];
            Assert.Equal(0, CliRunner.Run(args).ExitCode);
            Assert.Contains("already finished", CliRunner.Run(args).Stdout);
            ClassFolders.Write(Path.Combine(data, "star", "added.png"), 3, new Random(5));
            var again = CliRunner.Run(args);
            Assert.Equal(0, again.ExitCode);
            Assert.DoesNotContain("already finished", again.Stdout);
            using var store = ResultsStores.Open(db);
            Assert.Equal(2, store.Runs().Count);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    static List<Prediction> Evaluate(Classifier classifier, ImageTask task)
    {
        using var loader = classifier.Loader(task.Test);
        return RunExecutor.Predictions(Evaluator.Evaluate(classifier.Model, loader, CPU)).OrderBy(p => p.Index).ToList();
    }

    static void AssertSamePredictions(IReadOnlyList<Prediction> expected, IReadOnlyList<Prediction> actual, float tolerance)
    {
        Assert.Equal(expected.Select(p => (p.Index, p.Predicted)), actual.Select(p => (p.Index, p.Predicted)));
        for (int i = 0; i < expected.Count; i++)
            for (int c = 0; c < expected[i].Logits.Length; c++)
                Assert.Equal(expected[i].Logits[c], actual[i].Logits[c], tolerance);
    }
}
