using PeftSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Dense;

/// <summary>The two dense task families: semantic segmentation (mIoU) and object detection (COCO box AP).</summary>
public enum DenseKind { Segmentation, Detection }

/// <summary>
/// A ViT backbone with a dense head (state-dict prefixes "backbone." and "decode_head.", as mmsegmentation's
/// EncoderDecoder). The backbone is an ordinary <see cref="VisionTransformer"/> without a classifier, so every PEFT
/// method applies to it unchanged; the head always trains.
/// </summary>
public sealed class DenseModel : nn.Module
{
    public VisionTransformer backbone;
    public nn.Module decode_head;

    public DenseModel(VisionTransformer backbone, DenseKind kind, int numClasses, string segHead = "uper") : base("DenseModel")
    {
        if (backbone.Config.NumClasses != 0) throw new PeftSharpException("backbone", "a dense backbone has no classifier (num_classes 0)");
        Kind = kind;
        NumClasses = numClasses;
        this.backbone = backbone;
        var c = backbone.Config;
        decode_head = kind == DenseKind.Segmentation
            ? SegmentationHead.Create(segHead, c.Depth, c.EmbedDim, numClasses)
            : new FcosHead(c.EmbedDim, c.PatchSize, numClasses);
        Indices = kind == DenseKind.Segmentation ? ((SegmentationHead)decode_head).Indices : FcosHead.Indices(c.Depth);
        RegisterComponents();
        decode_head.to(backbone.pos_embed.device);
    }

    public DenseKind Kind { get; }
    public int NumClasses { get; }
    /// <summary>The backbone blocks the head reads.</summary>
    public int[] Indices { get; }

    /// <summary>The head's input maps. Blocks before <paramref name="firstTrainableBlock"/> hold nothing that trains,
    /// so they run without autograd (as the classification trainer's frozen prefix).</summary>
    public List<Tensor> Features(Tensor images, int firstTrainableBlock = 0)
    {
        int end = Indices.Max() + 1, split = Math.Clamp(firstTrainableBlock, 0, end);
        var maps = new Dictionary<int, Tensor>();
        Tensor tokens = images;
        TokenLayout? layout = null;
        if (split > 0)
        {
            using var _ = no_grad();
            var below = backbone.ForwardIntermediates(images, Indices, false, 0, split, null, out tokens, out var entering);
            foreach (var (i, m) in below) maps[i] = m;
            layout = entering;
        }
        if (split < end)
            foreach (var (i, m) in backbone.ForwardIntermediates(tokens, Indices, false, split, end, layout, out _, out _)) maps[i] = m;
        return Indices.Select(i => maps[i]).ToList();
    }

    /// <summary>Segmentation logits [B, classes, H, W] at the input size.</summary>
    public Tensor SegmentationLogits(Tensor images, int firstTrainableBlock = 0) =>
        ((SegmentationHead)decode_head).Decode(Features(images, firstTrainableBlock), images.shape[2], images.shape[3]);

    /// <summary>FCOS outputs over every pyramid location.</summary>
    public FcosOutputs DetectionOutputs(Tensor images, int firstTrainableBlock = 0) =>
        ((FcosHead)decode_head).Forward(Features(images, firstTrainableBlock)[^1]);
}
