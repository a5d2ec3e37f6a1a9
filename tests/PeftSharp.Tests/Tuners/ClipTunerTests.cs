using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

/// <summary>Methods apply to both CLIP towers through the same mechanism.</summary>
public class ClipTunerTests
{
    [Theory]
    [InlineData("lora")]
    [InlineData("ssf")]
    [InlineData("prefix")]
    [InlineData("adapter-houlsby")]
    [InlineData("bitfit+lora")]
    public void Methods_apply_to_both_clip_towers_and_train(string method)
    {
        manual_seed(8);
        using var clip = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
        var io = SafeTensors.Load(TestFiles.ClipIo);
        // Houlsby's adapters are live from the first step (Xavier-initialised up-projection): with 2 pairs and 5 steps
        // at lr 1e-2, whether the loss falls depended on which dropout masks were drawn. Without dropout it does (0.81 →
        // 0.55); this test is about both towers training, not about dropout.
        var settings = method == "adapter-houlsby" ? TunerRegistry.ParseSettings(new[] { "dropout=0" }) : null;
        var peft = PeftModel.Create(clip, method, settings, new PeftOptions { TrainHead = false, Towers = new[] { "visual", "text" } });
        var names = peft.TrainableParameters().Select(p => p.Name).ToList();
        Assert.Contains(names, n => n.StartsWith("visual.blocks."));
        Assert.Contains(names, n => n.StartsWith("text.blocks."));

        // Contrastive loss over the 2 images × first 2 texts, as CLIP trains.
        var optimizer = optim.AdamW(peft.TrainableParameters().Select(p => p.Parameter), lr: 1e-2);
        var targets = arange(2);
        double Loss()
        {
            var (perImage, _) = clip.forward(io["image"], io["text"][..2]);
            return nn.functional.cross_entropy(perImage, targets).item<float>();
        }
        clip.eval();
        double before;
        using (no_grad()) before = Loss();
        for (int i = 0; i < 5; i++)
        {
            clip.train();
            optimizer.zero_grad();
            var (perImage, _) = clip.forward(io["image"], io["text"][..2]);
            nn.functional.cross_entropy(perImage, targets).backward();
            optimizer.step();
        }
        clip.eval();
        using (no_grad()) Assert.True(Loss() < before, $"{method}: contrastive loss did not fall");
    }

    [Fact]
    public void Lora_on_clip_merges_into_open_clip_structure()
    {
        manual_seed(9);
        using var clip = ModelCheckpoints.LoadClip(TestFiles.ClipCheckpoint).Model;
        var io = SafeTensors.Load(TestFiles.ClipIo);
        var peft = PeftModel.Create(clip, "lora", null, new PeftOptions { TrainHead = false, Towers = new[] { "visual", "text" } });
        using (no_grad())
            foreach (var (name, p) in clip.named_parameters().Where(p => p.name.Contains("lora_B")))
                p.normal_(0, 0.05);
        clip.eval();
        Tensor tuned;
        using (no_grad()) tuned = clip.forward(io["image"], io["text"]).LogitsPerImage;
        peft.MergeAndUnload();
        using (no_grad()) TensorAssert.Close(tuned, clip.forward(io["image"], io["text"]).LogitsPerImage, atol: 1e-4, what: "merged CLIP");
        string path = Path.Combine(TestFiles.TempDir(), "merged_clip.safetensors");
        ModelCheckpoints.SaveClip(path, clip);
        using var file = SafeTensorsFile.Open(path);
        Assert.True(file.Contains("visual.transformer.resblocks.0.attn.in_proj_weight"));
        Assert.DoesNotContain(file.Tensors, t => t.Name.Contains("lora") || t.Name.Contains("base_layer"));
    }
}
