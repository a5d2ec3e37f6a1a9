using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Inference;
using PeftSharp.Suite;
using PeftSharp.Tests.Cli;
using PeftSharp.VisionLanguage;

namespace PeftSharp.Tests.UserPath;

/// <summary>CLIP zero-shot prediction of image files agrees with the prompt classification the CLIP evaluation
/// computes on the same images (two paths, one number).</summary>
public class ZeroShotPredictTests
{
    [Fact]
    public void Zero_shot_predict_names_the_class_the_clip_evaluation_predicts()
    {
        string dir = TestFiles.TempDir("zero-shot");
        try
        {
            var fashion = VlTasks.Load(VlTasks.FashionPrompts, dir);
            var task = VtabTask.Open(MiniVtab.Materialize(dir, taskNames: ["fashion-mnist"])[0].Directory);
            var model = ModelCheckpoints.LoadClip(ShippedModels.RequireDefaultClip()).Model;
            var normalization = Normalization.FromName(ModelCheckpoints.ReadNormalization(ShippedModels.DefaultClip)!);
            int[] expected;
            using (model) expected = ClipEvaluation.Classify(model, fashion.Test, normalization).Predicted;

            // VlTasks.ClassPrompt is "a photo of a {lower-cased name}".
            var names = task.ClassNames!.Select(n => n.Replace('/', ' ').ToLowerInvariant()).ToList();
            var files = Enumerable.Range(0, 120).Select(i => task.Test.ImagePath(i)).ToList();
            using var classifier = ZeroShotClassifier.Load(null, null, names, ["a photo of a {}"]);
            var predicted = Predictor.Predict(classifier, ImageFiles.Collect(files), topK: 3);
            Assert.Equal(expected.Take(120).Select(p => names[p]), predicted.Select(p => p.Top[0].Name));
            Assert.All(predicted, p => Assert.True(p.Top[0].Probability >= p.Top[1].Probability && p.Top.Sum(s => s.Probability) <= 1 + 1e-6));

            // The CLI says the same for the first image.
            var cli = CliRunner.Run(["predict", "--clip", "--classes", string.Join(",", names), "--template", "a photo of a {}", "--top", "1", "--format", "csv", files[0]]);
            Assert.True(cli.ExitCode == 0, cli.Stderr);
            Assert.Contains($",{names[expected[0]]},", cli.Stdout);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Zero_shot_needs_two_distinct_classes_and_templates_with_a_slot()
    {
        Assert.Contains("at least two class names", Assert.Throws<PeftSharpException>(() => ZeroShotClassifier.Load(null, null, ["cat"])).Message);
        Assert.Contains("'cat' is named twice", Assert.Throws<PeftSharpException>(() => ZeroShotClassifier.Load(null, null, ["cat", "cat"])).Message);
        Assert.Contains("expected '{}'", Assert.Throws<PeftSharpException>(() => ZeroShotClassifier.Load(null, null, ["cat", "dog"], ["a photo"])).Message);
    }
}
