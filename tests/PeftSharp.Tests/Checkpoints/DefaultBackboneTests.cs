using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Suite;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Checkpoints;

/// <summary>The shipped default backbone (models/): its file, its card, its keys, and that it is pretrained for real.</summary>
public class DefaultBackboneTests
{
    const string Name = "peftsharp-vit-tiny6-p8-32";
    static string Weights => TestFiles.Data($"models/{Name}.safetensors");

    [Fact]
    public void The_weights_are_small_timm_keyed_and_load_strictly()
    {
        Assert.True(new FileInfo(Weights).Length <= 25L << 20, "the default backbone exceeds 25 MB");
        var loaded = ModelCheckpoints.LoadVit(Weights);
        Assert.Equal(KeyConvention.Timm, loaded.Convention);
        var config = loaded.Model.Config;
        Assert.Equal((32, 8, 192, 6, 3), (config.ImgSize, config.PatchSize, config.EmbedDim, config.Depth, config.NumHeads));
        // Exactly the keys timm's VisionTransformer of this shape has.
        Assert.Equal(new VisionTransformer(config).state_dict().Keys.Order(), loaded.Model.state_dict().Keys.Order());
        Assert.Equal("inception", ModelCheckpoints.ReadNormalization(Weights));
    }

    [Fact]
    public void The_model_card_states_data_recipe_seed_time_and_held_out_accuracy()
    {
        var card = JsonNode.Parse(File.ReadAllText(TestFiles.Data($"models/{Name}.card.json")))!;
        Assert.Contains("GlyphSource", card["data"]!.GetValue<string>());
        Assert.Contains("PhotoSource", card["data"]!.GetValue<string>());
        Assert.True(card["photos"]!.AsArray().Count >= 2);
        Assert.True(card["held_out_photo_top1_percent"]!.GetValue<double>() > 20 * 100.0 / card["photos"]!.AsArray().Count);
        Assert.NotNull(card["recipe"]!["seed"]);
        Assert.NotNull(card["recipe"]!["curriculum"]);
        Assert.True(card["training_seconds"]!.GetValue<double>() > 0);
        double heldOut = card["held_out_top1_percent"]!.GetValue<double>();
        int classes = card["architecture"]!["num_classes"]!.GetValue<int>();
        Assert.True(heldOut > 20 * 100.0 / classes, $"held-out top-1 {heldOut}% is near chance ({100.0 / classes:F2}%)");
    }

    /// <summary>digits stands for the glyph half of the pretraining, photo-patches for the photo half: glyph
    /// pretraining alone lost to random init there (its colour and texture statistics).</summary>
    [Theory]
    [InlineData("digits", 20)]
    [InlineData("photo-patches", 15)]
    public void Its_features_separate_a_downstream_task_far_better_than_a_random_init_backbone_of_the_same_shape(string taskName, double margin)
    {
        string dir = TestFiles.TempDir("peftsharp-default-backbone");
        try
        {
            var task = VtabTask.Open(MiniVtab.Materialize(dir, taskNames: new[] { taskName })[0].Directory);
            var pretrained = ModelCheckpoints.LoadVit(Weights).Model;
            manual_seed(0);
            var random = new VisionTransformer(pretrained.Config);

            double p = NearestCentroidTop1(pretrained, task), r = NearestCentroidTop1(random, task);

            Assert.True(p > r + margin, $"nearest-centroid top-1 on {taskName}: pretrained {p:F1}%, random init {r:F1}%");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Class means of the pre-logits features on train800val200; top-1 (%) of the nearest mean on test.</summary>
    static double NearestCentroidTop1(VisionTransformer model, VtabTask task)
    {
        var options = new TrainOptions { Normalization = "inception", BatchSize = 250 };
        using var train = TrainingData.Loader(task.Train800Val200, model.Config.ImgSize, options, shuffle: false);
        using var test = TrainingData.Loader(task.Test, model.Config.ImgSize, options, shuffle: false);
        model.eval();
        using var _ = inference_mode();
        (Tensor Features, Tensor Labels) Embed(PeftSharp.Data.DataLoader loader)
        {
            var features = new List<Tensor>();
            var labels = new List<Tensor>();
            foreach (var batch in loader.Epoch(0))
                using (batch)
                {
                    features.Add(model.ForwardHead(model.ForwardFeatures(batch.Images, out var layout), layout, preLogits: true));
                    labels.Add(batch.Labels.clone());
                }
            return (cat(features, 0), cat(labels, 0));
        }
        var (trainX, trainY) = Embed(train);
        var (testX, testY) = Embed(test);
        var centroids = stack(Enumerable.Range(0, task.NumClasses).Select(c => trainX[trainY.eq(c)].mean(new long[] { 0 })).ToArray());
        var predicted = cdist(testX, centroids).argmin(1);
        return 100 * predicted.eq(testY).to(float32).mean().item<float>();
    }
}
