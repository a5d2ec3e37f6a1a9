using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Models;

namespace PeftSharp.Video;

/// <summary>Where the video ViT comes from: an image ViT checkpoint inflated to clips (the default: the shipped
/// backbone), or a VideoMAE-named video checkpoint.</summary>
public sealed record VideoBackbone(string Checkpoint, bool Inflate, int Frames, int Tubelet)
{
    /// <summary>The clip side, for a .pth checkpoint whose training args do not record it (not part of the run's identity:
    /// the clip transform records it).</summary>
    public int? ImgSize { get; init; }

    public VideoVisionTransformer Load(int numClasses, double dropPath)
    {
        if (Inflate) return VideoCheckpoints.Inflate(Checkpoint, Frames, Tubelet, numClasses, dropPath);
        var c = VideoCheckpoints.ReadConfig(Checkpoint, ImgSize, Frames);
        if (c.NumFrames != Frames) throw new PeftSharpException($"{Checkpoint}: the video checkpoint takes {c.NumFrames} frames, the run samples {Frames}");
        var loaded = VideoCheckpoints.LoadVideoMae(Checkpoint, c with { DropPathRate = dropPath }).Model;
        if (c.NumClasses != numClasses) loaded.ResetClassifier(numClasses);
        return loaded;
    }

    public string ModelJson => new JsonObject { ["video"] = Inflate ? "inflated" : "videomae", ["frames"] = Frames, ["tubelet"] = Tubelet }.ToJsonString();
}

/// <summary>Clip data settings of a video run (part of its identity).</summary>
public sealed record VideoDataOptions(ClipSampler Sampler, ClipTransform Transform)
{
    public JsonObject ToJson() => new()
    {
        ["sampling"] = Sampler.Mode.ToString().ToLowerInvariant(), ["frames"] = Sampler.Frames, ["interval"] = Sampler.Interval,
        ["size"] = Transform.Size, ["short_side"] = Transform.ResizedShortSide, ["test_clips"] = Transform.TestClips,
        ["test_crops"] = Transform.TestCrops, ["flip"] = Transform.Flip,
    };
}
