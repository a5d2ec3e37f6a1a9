using System.Text.RegularExpressions;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Checkpoints;

/// <summary>
/// VideoMAE's released checkpoints as PyTorch wrote them (<c>torch.save</c> .pth files, read by <see cref="TorchPickle"/>):
/// fine-tuning checkpoints (the state dict under 'module' or 'model', VideoMAE's names) and pretraining checkpoints
/// (the encoder under 'encoder.', beside a decoder). Pretraining names are mapped as VideoMAE's
/// run_class_finetuning.py does: 'encoder.' stripped; the decoder, 'encoder_to_decoder' and 'mask_token' dropped;
/// the encoder's final 'norm' dropped under mean pooling (the fine-tuning model pools through a new fc_norm), and the
/// head and fc_norm start fresh. Any other key is an error naming it.
/// </summary>
public static class VideoMaePth
{
    /// <summary>VideoMAE's ViT-S/B/L/H all use 64-wide attention heads; a state dict does not record the head count.</summary>
    public const int HeadDim = 64;

    public sealed record Contents(Dictionary<string, Tensor> Tensors, string Path, bool Pretraining, IReadOnlyList<string> Dropped, int? ImgSize, int? NumFrames)
    {
        public ITensorSource Source => new DictionarySource(Tensors, Path);
    }

    /// <summary>The checkpoint's tensors under VideoMAE's fine-tuning names, and the clip size and frame count its
    /// training 'args' record (input_size, num_frames), if it has them.</summary>
    public static Contents Read(string path)
    {
        var root = TorchPickle.Load(path);
        var state = TorchPickle.StateDict(path, root);
        bool pretraining = state.Keys.Any(k => k.StartsWith("encoder.", StringComparison.Ordinal));
        var tensors = new Dictionary<string, Tensor>();
        var dropped = new List<string>();
        foreach (var (key, value) in state)
        {
            string name = key.StartsWith("backbone.", StringComparison.Ordinal) ? key["backbone.".Length..] : key;
            if (pretraining)
            {
                if (name.StartsWith("decoder.", StringComparison.Ordinal) || name.StartsWith("encoder_to_decoder.", StringComparison.Ordinal) || name == "mask_token")
                {
                    dropped.Add(key);
                    value.Dispose();
                    continue;
                }
                if (name.StartsWith("encoder.", StringComparison.Ordinal)) name = name["encoder.".Length..];
                if (name.StartsWith("norm.", StringComparison.Ordinal))
                {
                    dropped.Add(key);
                    value.Dispose();
                    continue;
                }
            }
            tensors[name] = value;
        }
        var args = (root as Dictionary<object, object?>)?.GetValueOrDefault("args") as PickledObject;
        var fields = args?.State as Dictionary<object, object?>;
        int? Arg(string field) => fields?.GetValueOrDefault(field) switch { long v => (int)v, object?[] { Length: > 0 } t when t[0] is long v => (int)v, _ => null };
        return new Contents(tensors, path, pretraining, dropped, Arg("input_size"), Arg("num_frames"));
    }

    /// <summary>The architecture the tensors imply (embed_dim, patch and tubelet size, depth, MLP ratio, q/v biases,
    /// layer scale, pooling, classes; heads of <see cref="HeadDim"/>), with the clip size and frame count from the
    /// checkpoint's args, else <paramref name="imgSize"/> and <paramref name="numFrames"/>.</summary>
    public static VideoVitConfig InferConfig(Contents contents, string path, int? imgSize, int? numFrames)
    {
        var s = contents.Source;
        if (!VideoMaeKeys.IsVideoMae(s))
            throw new PeftSharpException($"{path}: not a video ViT checkpoint (expected a 5-D patch_embed.proj.weight, VideoMAE's tubelet kernel; keys: {string.Join(", ", s.Keys.Take(6))})");
        var kernel = s.Shape("patch_embed.proj.weight");
        int dim = (int)kernel[0];
        int depth = s.Keys.Select(k => Regex.Match(k, @"^blocks\.(\d+)\.")).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value) + 1).DefaultIfEmpty(0).Max();
        int size = contents.ImgSize ?? imgSize
            ?? throw new PeftSharpException($"{path}: the clip size (img_size) is not recorded (no training 'args' with input_size); give it");
        int frames = contents.NumFrames ?? numFrames
            ?? throw new PeftSharpException($"{path}: the number of frames (all_frames) is not recorded (no training 'args' with num_frames); give it");
        if (dim % HeadDim != 0) throw new PeftSharpException($"{path}: embed_dim {dim} is not a multiple of VideoMAE's {HeadDim}-wide heads; give the architecture as config");
        return new VideoVitConfig
        {
            ImgSize = size, NumFrames = frames, InChans = (int)kernel[1], TubeletSize = (int)kernel[2], PatchSize = (int)kernel[3],
            EmbedDim = dim, Depth = depth, NumHeads = dim / HeadDim,
            MlpRatio = s.Contains("blocks.0.mlp.fc1.weight") ? (double)s.Shape("blocks.0.mlp.fc1.weight")[0] / dim : 4.0,
            QkvBias = s.Contains("blocks.0.attn.q_bias"),
            InitValues = s.Contains("blocks.0.gamma_1") ? 0.1 : null,   // the value is loaded; any non-null turns layer scale on
            NumClasses = s.Contains("head.weight") ? (int)s.Shape("head.weight")[0] : 0,
            UseMeanPooling = !s.Contains("norm.weight"),   // VideoMAE keeps a final norm only without mean pooling
            LearnablePosEmbed = s.Contains("pos_embed"),
        };
    }

    /// <summary>Loads the checkpoint into a video ViT (the architecture given, else inferred). Keys the model does not
    /// have are an error naming them; a pretraining checkpoint may lack only the head and fc_norm.</summary>
    public static LoadedModel<VideoVisionTransformer> Load(string path, VideoVitConfig? config = null, int? imgSize = null, int? numFrames = null)
    {
        var contents = Read(path);
        try
        {
            string source = config is null ? "inferred from the tensors" : "given";
            config ??= InferConfig(contents, path, imgSize, numFrames);
            var model = new VideoVisionTransformer(config);
            var report = StateDictLoader.Load(model, VideoMaeKeys.ToInternal(contents.Source));
            report.ThrowUnlessStrict(path, contents.Pretraining ? name => name.StartsWith("head.", StringComparison.Ordinal) || name.StartsWith("fc_norm.", StringComparison.Ordinal) : null);
            return new LoadedModel<VideoVisionTransformer>(model, report, KeyConvention.Timm, source);
        }
        finally
        {
            foreach (var t in contents.Tensors.Values) t.Dispose();
        }
    }
}
