using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.VisionLanguage;

namespace PeftSharp.Tests.VisionLanguage;

/// <summary>The shipped CLIP model: present next to the assembly, small, and it learned what it was pretrained on.</summary>
public class ShippedClipTests
{
    [Fact]
    public void The_shipped_clip_is_small_loads_strictly_and_has_a_card()
    {
        string path = ShippedModels.RequireDefaultClip();
        Assert.True(new FileInfo(path).Length <= 25L << 20, $"{new FileInfo(path).Length} bytes");
        Assert.True(File.Exists(Path.ChangeExtension(path, null) + ".card.json"));
        var loaded = ModelCheckpoints.LoadClip(path);
        Assert.True(loaded.Report.IsStrictMatch, loaded.Report.Describe());
        loaded.Model.Dispose();
    }

    [Fact]
    public void Zero_shot_classification_and_retrieval_on_held_out_scenes_beat_chance_by_far()
    {
        string path = ShippedModels.RequireDefaultClip();
        using var clip = ModelCheckpoints.LoadClip(path).Model;
        var normalization = Normalization.FromName(ModelCheckpoints.ReadNormalization(path)!);
        // 64 single-object classes ("a small red circle", …): chance is 1.6 %.
        var objects = ClipPretraining.SingleObjectScenes(200);
        double top1 = ClipEvaluation.Classify(clip, objects, normalization).Top1;
        Assert.True(top1 >= 25, $"zero-shot top-1 {top1:F1} %");
        // 200 unique held-out scenes: chance R@10 is 5 %.
        var retrieval = ClipEvaluation.Retrieval(clip, ClipPretraining.HeldOutScenes(200), normalization);
        Assert.True(retrieval.ImageToTextR10 >= 50 && retrieval.TextToImageR10 >= 50, retrieval.ToString());
    }
}
