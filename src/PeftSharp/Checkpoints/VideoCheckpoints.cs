using PeftSharp.Models;

namespace PeftSharp.Checkpoints;

/// <summary>Loading and saving the video ViT: VideoMAE fine-tuning checkpoints (its key names), ours (the same names,
/// with the architecture in the "config" metadata), and image checkpoints inflated to video.</summary>
public static class VideoCheckpoints
{
    /// <summary>Loads a VideoMAE-named safetensors file, or a VideoMAE .pth (<see cref="VideoMaePth"/>). The architecture
    /// comes from <paramref name="config"/>, else from the file's "config" metadata (VideoMAE constructor arguments as
    /// JSON), for a .pth from its tensors and training args.</summary>
    public static LoadedModel<VideoVisionTransformer> LoadVideoMae(string path, VideoVitConfig? config = null, bool strict = true)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        if (TorchPickle.IsTorchZip(path)) return VideoMaePth.Load(path, config);
        using var file = SafeTensorsFile.Open(path);
        var raw = new SafeTensorsSource(file);
        if (!VideoMaeKeys.IsVideoMae(raw))
            throw new PeftSharpException($"{path}: not a video ViT checkpoint (expected a 5-D patch_embed.proj.weight, VideoMAE's tubelet kernel)");
        string configSource = "given";
        if (config is null)
        {
            if (!file.Metadata.TryGetValue("config", out var json))
                throw new PeftSharpException($"{path}: no video config given and no 'config' metadata in the file (pass VideoMAE's arguments as JSON: img_size, patch_size, all_frames, tubelet_size, embed_dim, depth, num_heads, num_classes, init_values)");
            config = VideoVitConfig.FromJson(json, $"{path} metadata 'config'");
            configSource = "metadata";
        }
        var model = new VideoVisionTransformer(config);
        var report = StateDictLoader.Load(model, VideoMaeKeys.ToInternal(raw));
        if (strict) report.ThrowUnlessStrict(path);
        return new LoadedModel<VideoVisionTransformer>(model, report, KeyConvention.Timm, configSource);
    }

    /// <summary>Whether a checkpoint file holds a video ViT (a 5-D tubelet kernel) rather than an image ViT.</summary>
    public static bool IsVideo(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        if (TorchPickle.IsTorchZip(path)) return true;   // PyTorch files are read as VideoMAE checkpoints only
        using var file = SafeTensorsFile.Open(path);
        return VideoMaeKeys.IsVideoMae(new SafeTensorsSource(file));
    }

    /// <summary>The clip side a checkpoint's model takes: a video checkpoint's img_size (from its "config" metadata), an
    /// image ViT's image size (what an inflated model keeps).</summary>
    public static int ImageSize(string path, int? numFrames = null)
    {
        if (IsVideo(path)) return ReadConfig(path, null, numFrames).ImgSize;
        using var image = ModelCheckpoints.LoadVit(path).Model;
        return image.Config.ImgSize;
    }

    /// <summary>A video checkpoint's architecture without loading it: a safetensors file's "config" metadata, a .pth's
    /// as its tensors and training args imply (<paramref name="imgSize"/> and <paramref name="numFrames"/> where the
    /// args do not say).</summary>
    public static VideoVitConfig ReadConfig(string path, int? imgSize = null, int? numFrames = null)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        if (TorchPickle.IsTorchZip(path))
        {
            var contents = VideoMaePth.Read(path);
            try { return VideoMaePth.InferConfig(contents, path, imgSize, numFrames); }
            finally { foreach (var t in contents.Tensors.Values) t.Dispose(); }
        }
        using var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("config", out var json))
            throw new PeftSharpException($"{path}: no 'config' metadata in the video checkpoint, so its architecture is unknown (pass VideoMAE's arguments as JSON)");
        return VideoVitConfig.FromJson(json, $"{path} metadata 'config'");
    }

    /// <summary>Saves under VideoMAE's key names, with the architecture as "config" metadata.</summary>
    public static void SaveVideoMae(string path, VideoVisionTransformer model, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { ["config"] = model.Config.ToJson(), ["format"] = "pt" };
        SafeTensors.Save(path, VideoMaeKeys.FromInternal(StateDictLoader.StateDict(model)), meta);
    }

    /// <summary>An image ViT checkpoint (any convention <see cref="ModelCheckpoints.LoadVit"/> reads) inflated to a
    /// video ViT of <paramref name="numFrames"/> frames in tubelets of <paramref name="tubeletSize"/>.</summary>
    public static VideoVisionTransformer Inflate(string imageCheckpoint, int numFrames, int tubeletSize, int numClasses, double dropPathRate = 0)
    {
        using var image = ModelCheckpoints.LoadVit(imageCheckpoint).Model;
        return VideoInflation.Inflate(image, numFrames, tubeletSize, numClasses, dropPathRate);
    }
}
