using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Video;

/// <summary>One clip's top classes, most probable first (probabilities averaged over the test views).</summary>
public sealed record ClipPrediction(string Clip, IReadOnlyList<(int Label, string Name, double Probability)> Top);

/// <summary>
/// A trained video classifier from adapter files (<see cref="VideoAdapter"/>): the rebuilt model with the adapter
/// applied (or merged), and the clip sampling, transform and class names the run used, so evaluating a list of clips
/// computes what the run computed and predicting reads clips as the run read its test clips.
/// </summary>
public sealed class VideoClassifier : IDisposable
{
    VideoClassifier(VideoVisionTransformer model, PeftModel peft, VideoAdapter.Info info)
    {
        Model = model;
        Peft = peft;
        Info = info;
    }

    public VideoVisionTransformer Model { get; }
    /// <summary>The applied adapter; null after <see cref="MergeAndUnload"/>.</summary>
    public PeftModel? Peft { get; private set; }
    public VideoAdapter.Info Info { get; }
    public string Method => Info.Method;
    public IReadOnlyList<string> ClassNames => Info.ClassNames;
    public int NumClasses => Info.ClassNames.Count;

    /// <summary>Loads an adapter folder on its recorded base (or <paramref name="checkpoint"/>; another base than the
    /// recorded one only with <paramref name="forceBase"/>).</summary>
    public static VideoClassifier Load(string adapter, string? checkpoint = null, bool forceBase = false)
    {
        var (model, peft, info) = VideoAdapter.Load(adapter, checkpoint, forceBase);
        return new VideoClassifier(model, peft, info);
    }

    /// <summary>Folds a mergeable adapter into the weights (the model then computes without the adapter's modules).</summary>
    public void MergeAndUnload()
    {
        if (Peft is null) return;
        Peft.MergeAndUnload();
        Peft = null;
    }

    /// <summary>A list file's clips read with the adapter's sampling and transform (test views as recorded).</summary>
    public ClipDataset Clips(string listFile, string root) =>
        ClipDataset.FromList(listFile, root, NumClasses, Info.Data.Sampler, Info.Data.Transform);

    /// <summary>Top-1/top-5 and every prediction over a clip set, batched as the run's test pass was.</summary>
    public VideoEvaluation Evaluate(ClipDataset clips, Device device, int? batchSize = null) =>
        VideoTrainer.Evaluate(Model, new ClipLoader(clips, batchSize ?? Info.EvalBatchSize, train: false, seed: 0), device);

    /// <summary>The top classes of unlabelled clips: rawframe folders (every image in name order) or video files.</summary>
    public IReadOnlyList<ClipPrediction> Predict(IReadOnlyList<string> clips, int top, Device device, int? batchSize = null)
    {
        var entries = clips.Select((path, i) => Directory.Exists(path)
            ? new ClipEntry(path, 0, CountFrames(path), i + 1)
            : File.Exists(path) ? new ClipEntry(path, 0, null, i + 1) : throw new PeftSharpException($"{path}: no such clip (a rawframe folder or a video file)")).ToList();
        var data = new ClipDataset(entries, NumClasses, Info.Data.Sampler, Info.Data.Transform, "clips");
        var evaluation = Evaluate(data, device, batchSize);
        int k = Math.Min(top, NumClasses);
        return evaluation.Predictions.Select(p => new ClipPrediction(clips[p.Index],
            p.Logits.Select((logProb, label) => (label, ClassNames[label], Math.Exp(logProb)))
                    .OrderByDescending(s => s.Item3).Take(k).ToList())).ToList();
    }

    static int CountFrames(string folder)
    {
        int n = Directory.EnumerateFiles(folder).Count(f => ImageDecoder.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()));
        return n > 0 ? n : throw new PeftSharpException($"{folder}: no frame images in the clip folder");
    }

    public void Dispose() => Model.Dispose();
}
