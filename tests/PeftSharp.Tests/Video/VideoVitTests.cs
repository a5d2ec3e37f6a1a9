using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Video;

/// <summary>The video ViT against what MCG-NJU/VideoMAE's fine-tuning model produced for the same weights and clips
/// (fixture README: ../shared/fixtures/parity), and inflation from an image ViT.</summary>
public class VideoVitTests
{
    static string Checkpoint => TestFiles.Data("videomae_tiny.safetensors");
    static Dictionary<string, Tensor> Io => SafeTensors.Load(TestFiles.Data("videomae_tiny_io.safetensors"));

    [Fact]
    public void Sinusoid_table_matches_videomae()
    {
        TensorAssert.Close(Io["pos_embed_sinusoid"], VideoVisionTransformer.SinusoidTable(32, 64), atol: 1e-6, what: "pos table");
    }

    [Fact]
    public void Tokens_pre_logits_and_logits_match_videomae()
    {
        var loaded = VideoCheckpoints.LoadVideoMae(Checkpoint);
        Assert.True(loaded.Report.IsStrictMatch, loaded.Report.Describe());
        using var model = loaded.Model;
        model.eval();
        var io = Io;
        using var _ = no_grad();
        var tokens = model.ForwardFeatures(io["input"], out var layout);
        TensorAssert.Close(io["tokens"], tokens, atol: 1e-5, what: "tokens");
        TensorAssert.Close(io["pre_logits"], model.ForwardHead(tokens, layout, preLogits: true), atol: 1e-5, what: "pre_logits");
        TensorAssert.Close(io["logits"], model.forward(io["input"]), atol: 1e-5, what: "logits");
    }

    [Fact]
    public void Saves_under_videomae_names_and_reloads_identically()
    {
        using var model = VideoCheckpoints.LoadVideoMae(Checkpoint).Model;
        model.eval();
        string path = Path.Combine(TestFiles.TempDir(), "video.safetensors");
        VideoCheckpoints.SaveVideoMae(path, model);
        using (var saved = SafeTensorsFile.Open(path))
        using (var original = SafeTensorsFile.Open(Checkpoint))
            Assert.Equal(original.Tensors.Select(t => t.Name).OrderBy(n => n), saved.Tensors.Select(t => t.Name).OrderBy(n => n));
        using var again = VideoCheckpoints.LoadVideoMae(path).Model;   // config from the saved metadata
        again.eval();
        using var _ = no_grad();
        TensorAssert.Identical(model.forward(Io["input"]), again.forward(Io["input"]));
    }

    [Fact]
    public void A_merged_lora_gives_the_unmerged_logits_and_saves_as_a_plain_videomae_checkpoint()
    {
        using var model = VideoCheckpoints.LoadVideoMae(Checkpoint).Model;
        var peft = PeftModel.Create(model, "lora");
        manual_seed(11);
        using (no_grad())
            foreach (var (name, p) in peft.TrainableParameters())
                if (name.Contains("lora_")) p.copy_(randn_like(p) * 0.5);   // B is zero at start: a trained-looking update
        model.eval();
        Tensor unmerged, bare;
        using (no_grad())
        {
            unmerged = model.forward(Io["input"]);
            using var original = VideoCheckpoints.LoadVideoMae(Checkpoint).Model;
            original.eval();
            bare = original.forward(Io["input"]);
        }
        // The fixture's logits are small (|max| 0.23): a move of 1e-3 is far above the 1e-5 the merge is held to.
        Assert.True((unmerged - bare).abs().max().item<float>() > 1e-3f, "the LoRA update must move the logits");
        var merged = (VideoVisionTransformer)peft.MergeAndUnload();
        string path = Path.Combine(TestFiles.TempDir(), "merged.safetensors");
        VideoCheckpoints.SaveVideoMae(path, merged);
        using (var saved = SafeTensorsFile.Open(path))
        using (var source = SafeTensorsFile.Open(Checkpoint))
            Assert.Equal(source.Tensors.Select(t => t.Name).OrderBy(n => n), saved.Tensors.Select(t => t.Name).OrderBy(n => n));
        using var reloaded = VideoCheckpoints.LoadVideoMae(path).Model;
        reloaded.eval();
        using var _ = no_grad();
        TensorAssert.Close(unmerged, merged.forward(Io["input"]), atol: 1e-5, what: "merged vs unmerged logits");
        TensorAssert.Close(unmerged, reloaded.forward(Io["input"]), atol: 1e-5, what: "reloaded merged checkpoint");
    }

    [Fact]
    public void Inflated_model_on_a_static_clip_gives_the_image_models_features()
    {
        // Exact for a ViT without a class token: every key and value then appears T times, which softmax ignores.
        manual_seed(3);
        using var image = new VisionTransformer(new VitConfig
        {
            ImgSize = 32, PatchSize = 8, EmbedDim = 64, Depth = 2, NumHeads = 4, NumClasses = 5, ClassToken = false,
            GlobalPool = "avg", InitValues = 0.5,
        });
        using (no_grad()) foreach (var p in image.parameters()) p.add_(randn_like(p) * 0.05);
        image.eval();
        using var video = VideoInflation.Inflate(image, numFrames: 4, tubeletSize: 2, numClasses: 0);
        video.eval();
        var images = randn(2, 3, 32, 32);
        var clip = images.unsqueeze(2).expand(-1, -1, 4, -1, -1).contiguous();   // [B, C, T, H, W], every frame the image
        using var _ = no_grad();
        var expected = image.ForwardHead(image.ForwardFeatures(images, out var imageLayout), imageLayout, preLogits: true);
        var actual = video.ForwardHead(video.ForwardFeatures(clip, out var layout), layout, preLogits: true);
        TensorAssert.Close(expected, actual, atol: 1e-5, what: "pooled features");
    }

    [Fact]
    public void Inflating_a_class_token_vit_keeps_its_class_token_and_repeats_its_patch_positions()
    {
        using var image = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        using var video = VideoInflation.Inflate(image, numFrames: 6, tubeletSize: 2, numClasses: 3);
        int n = image.Config.NumPatches;
        Assert.Equal(new long[] { 1, 1 + 3 * n, image.EmbedDim }, video.pos_embed!.shape);
        TensorAssert.Identical(image.pos_embed[.., 1..], video.pos_embed[.., (1 + 2 * n)..]);
        TensorAssert.Identical(image.cls_token!, video.cls_token!);
        // The tubelet kernel sums back to the image kernel.
        TensorAssert.Close(image.patch_embed.proj.forward(ones(1, 3, image.Config.ImgSize, image.Config.ImgSize)),
                           video.patch_embed.proj.forward(ones(new long[] { 1, 3, 2, image.Config.ImgSize, image.Config.ImgSize })).squeeze(2), atol: 1e-5);
        Assert.False(video.Config.UseMeanPooling);
    }

    [Fact]
    public void Block_tuners_attach_to_the_video_blocks_and_start_as_identity()
    {
        using var model = VideoCheckpoints.LoadVideoMae(Checkpoint).Model;
        model.eval();
        using var _ = no_grad();
        var before = model.forward(Io["input"]);
        // LoRA's B, AdaptFormer's and ConvPass's up projections start at zero: the logits must not move. ConvPass
        // convolves each of the clip's 2 temporal positions as its own 4×4 grid.
        var peft = PeftModel.Create(model, "lora+adaptformer+convpass");
        Assert.Contains(peft.TrainableParameters(), p => p.Name == "blocks.1.attn.qkv.lora_A.weight");
        Assert.Contains(peft.TrainableParameters(), p => p.Name == "blocks.0.convpass_mlp.adapter_conv.weight");
        TensorAssert.Close(before, model.forward(Io["input"]), atol: 1e-6, what: "logits with zero-initialised tuners");
    }

    [Fact]
    public void Prompts_enter_the_video_token_sequence()
    {
        using var model = VideoCheckpoints.LoadVideoMae(Checkpoint).Model;
        model.eval();
        PeftModel.Create(model, "vpt-shallow", new Dictionary<string, string> { ["prompts"] = "3" });
        using var _ = no_grad();
        var tokens = model.ForwardFeatures(Io["input"], out var layout);
        Assert.Equal(new long[] { 2, 35, 64 }, tokens.shape);
        Assert.Equal(3, layout.PatchStart);
        Assert.Equal(new long[] { 2, 7 }, model.ForwardHead(tokens, layout).shape);
    }

    [Fact]
    public void Image_only_methods_say_so_on_the_video_model()
    {
        using var model = VideoCheckpoints.LoadVideoMae(Checkpoint).Model;
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(model, "gps"));
        Assert.Contains("image ViT only", e.Message);
    }

    [Fact]
    public void An_inflated_model_sees_a_clip_and_its_reversal_alike_until_something_temporal_trains()
    {
        // Inflation spreads the patch kernel evenly over a tubelet's frames and repeats the patch positions over time,
        // so reversing the frames ([0 1 | 2 3] → [3 2 | 1 0]) only permutes tokens that attention and class-token
        // pooling treat alike. Methods that leave the patch kernel and positions frozen and add no temporal operator
        // (LoRA here, with a non-zero update) cannot tell "move left" from its reversal "move right"; ST-Adapter's
        // temporal convolution can, once its kernel is no longer zero.
        manual_seed(5);
        using var image = ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;
        int size = image.Config.ImgSize;
        var clip = randn(new long[] { 2, 3, 4, size, size });
        var reversed = clip.flip(2);
        Tensor Gap(string method)
        {
            using var video = VideoInflation.Inflate(image, numFrames: 4, tubeletSize: 2, numClasses: 3);
            var peft = PeftModel.Create(video, method);
            using (no_grad())
                foreach (var (_, p) in peft.TrainableParameters()) p.add_(randn_like(p) * 0.1);
            video.eval();
            using var _ = no_grad();
            return (video.forward(clip) - video.forward(reversed)).abs().max();
        }
        Assert.True(Gap("lora").item<float>() < 1e-5f, "LoRA on the inflated model: a clip and its reversal must give the same logits");
        Assert.True(Gap("st-adapter").item<float>() > 1e-2f, "ST-Adapter with a non-zero temporal kernel must tell them apart");
    }
}
