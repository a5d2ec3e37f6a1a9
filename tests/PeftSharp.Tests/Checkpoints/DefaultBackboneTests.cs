using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Suite;
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
        Assert.NotNull(card["recipe"]!["seed"]);
        Assert.NotNull(card["recipe"]!["curriculum"]);
        Assert.True(card["training_seconds"]!.GetValue<double>() > 0);
        double heldOut = card["held_out_top1_percent"]!.GetValue<double>();
        int classes = card["architecture"]!["num_classes"]!.GetValue<int>();
        Assert.True(heldOut > 20 * 100.0 / classes, $"held-out top-1 {heldOut}% is near chance ({100.0 / classes:F2}%)");
    }
}
