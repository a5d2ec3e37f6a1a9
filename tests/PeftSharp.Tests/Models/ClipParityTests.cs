using PeftSharp.Checkpoints;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Models;

/// <summary>Our CLIP against what open_clip 3.3.0 produced for the same weights, images and token ids.</summary>
public class ClipParityTests
{
    [Fact]
    public void Image_and_text_features_and_logits_match_open_clip()
    {
        var loaded = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint);
        Assert.True(loaded.Report.IsStrictMatch, loaded.Report.Describe());
        using var model = loaded.Model;
        model.eval();
        var io = SafeTensors.Load(TestFiles.ClipIo);
        using var _ = no_grad();
        TensorAssert.Close(io["image_features"], model.EncodeImage(io["image"]), what: "image_features");
        TensorAssert.Close(io["text_features"], model.EncodeText(io["text"]), what: "text_features");
        TensorAssert.Close(io["image_features_normalized"], model.EncodeImage(io["image"], normalize: true), what: "image normalized");
        TensorAssert.Close(io["text_features_normalized"], model.EncodeText(io["text"], normalize: true), what: "text normalized");
        TensorAssert.Close(io["logit_scale_exp"], model.logit_scale.exp(), what: "logit_scale.exp");
        var (perImage, perText) = model.forward(io["image"], io["text"]);
        TensorAssert.Close(io["logits_per_image"], perImage, atol: 1e-4, what: "logits_per_image");
        TensorAssert.Close(io["logits_per_text"], perText, atol: 1e-4, what: "logits_per_text");
    }

    [Fact]
    public void Clip_saves_with_open_clip_names_and_reloads_identically()
    {
        using var model = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
        model.eval();
        string path = Path.Combine(TestFiles.TempDir(), "clip.safetensors");
        using (var original = SafeTensorsFile.Open(TestFiles.ClipCheckpoint))
            ModelCheckpoints.SaveClip(path, model, original.Metadata["config"]);
        using (var saved = SafeTensorsFile.Open(path))
        using (var original = SafeTensorsFile.Open(TestFiles.ClipCheckpoint))
            Assert.Equal(original.Tensors.Select(t => t.Name).OrderBy(n => n), saved.Tensors.Select(t => t.Name).OrderBy(n => n));
        using var again = ModelCheckpoints.LoadClip(path).Model;
        again.eval();
        var io = SafeTensors.Load(TestFiles.ClipIo);
        using var _ = no_grad();
        TensorAssert.Identical(model.forward(io["image"], io["text"]).LogitsPerImage, again.forward(io["image"], io["text"]).LogitsPerImage);
    }

    [Fact]
    public void Clip_image_tower_alone_loads_as_a_vit_with_openai_keys()
    {
        // An OpenAI-style visual checkpoint: the visual.* tensors of the CLIP fixture under their own names.
        var all = SafeTensors.Load(TestFiles.ClipCheckpoint);
        var visual = all.Where(kv => kv.Key.StartsWith("visual.")).ToDictionary(kv => kv.Key["visual.".Length..], kv => kv.Value);
        string path = Path.Combine(TestFiles.TempDir(), "clip_visual.safetensors");
        SafeTensors.Save(path, visual);
        var config = ClipConfig.VisionTower(32, 8, 64, 2, 16, 4.0, 32, quickGelu: false);
        var loaded = ModelCheckpoints.LoadVit(path, config);
        Assert.Equal(KeyConvention.OpenAiClipVisual, loaded.Convention);
        Assert.True(loaded.Report.IsStrictMatch, loaded.Report.Describe());
        using var vit = loaded.Model;
        vit.eval();
        var io = SafeTensors.Load(TestFiles.ClipIo);
        using var _ = no_grad();
        TensorAssert.Close(io["image_features"], vit.forward(io["image"]), what: "image features via ViT");
    }
}
