using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Dense;

/// <summary>A segmentation decoder: feature maps of some backbone blocks in, class logits at the input size out.</summary>
public abstract class SegmentationHead : nn.Module
{
    protected SegmentationHead(string name) : base(name) { }

    /// <summary>Block outputs the head reads, by block index (absolute).</summary>
    public abstract int[] Indices { get; }

    /// <summary>Logits [B, classes, H, W] at the input size from the maps of <see cref="Indices"/> (in that order).</summary>
    public abstract Tensor Decode(IReadOnlyList<Tensor> maps, long height, long width);

    public static SegmentationHead Create(string kind, int depth, int embedDim, int numClasses) => kind switch
    {
        "linear" => new LinearSegHead(depth, embedDim, numClasses),
        "uper" => new UperSegHead(depth, embedDim, numClasses),
        _ => throw new PeftSharpException("head", $"unknown segmentation head '{kind}' (expected linear or uper)"),
    };
}

/// <summary>The minimal baseline (Segmenter's / DINOv2's linear decoder): the last block's patch features, a
/// LayerNorm and a 1×1 convolution to class logits per patch, bilinearly upsampled to the input.</summary>
public sealed class LinearSegHead : SegmentationHead
{
    public LayerNorm2d norm;
    public Module<Tensor, Tensor> cls_seg;
    readonly int[] indices;

    public LinearSegHead(int depth, int embedDim, int numClasses) : base("LinearSegHead")
    {
        indices = new[] { depth - 1 };
        norm = new LayerNorm2d(embedDim);
        cls_seg = new MatConv2d(embedDim, numClasses, 1);
        RegisterComponents();
    }

    public override int[] Indices => indices;

    public override Tensor Decode(IReadOnlyList<Tensor> maps, long height, long width) =>
        F.interpolate(cls_seg.forward(norm.forward(maps[0])), new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false);
}

/// <summary>
/// A light UperNet for a plain ViT (mmsegmentation's ViT + MultiLevelNeck + UPerHead, without the pyramid pooling
/// module): three blocks' maps, all at the patch stride, become a pyramid at strides p/2, p and 2p (a 2×2 transposed
/// convolution, identity, 2×2 max pooling); 1×1 laterals, a top-down path adding each coarser level upsampled, a 3×3
/// convolution per level, then all levels upsampled to the finest, concatenated, fused by a 3×3 convolution and
/// classified by a 1×1 one, bilinearly upsampled to the input.
/// </summary>
public sealed class UperSegHead : SegmentationHead
{
    public const int Channels = 64;
    public Module<Tensor, Tensor> up, down;
    public ModuleList<LayerNorm2d> norms;
    public ModuleList<ConvNormAct> lateral_convs, fpn_convs;
    public ConvNormAct fpn_bottleneck;
    public Module<Tensor, Tensor> cls_seg;
    readonly int[] indices;

    public UperSegHead(int depth, int embedDim, int numClasses) : base("UperSegHead")
    {
        indices = BlockIndices.Evenly(depth, 3);
        int levels = indices.Length;
        norms = new ModuleList<LayerNorm2d>(Enumerable.Range(0, levels).Select(_ => new LayerNorm2d(embedDim)).ToArray());
        up = new MatUpsample2x(embedDim, embedDim);
        down = MaxPool2d(2, 2);
        lateral_convs = new ModuleList<ConvNormAct>(Enumerable.Range(0, levels).Select(_ => new ConvNormAct(embedDim, Channels, 1)).ToArray());
        fpn_convs = new ModuleList<ConvNormAct>(Enumerable.Range(0, levels).Select(_ => new ConvNormAct(Channels, Channels, 3)).ToArray());
        fpn_bottleneck = new ConvNormAct(levels * Channels, Channels, 3);
        cls_seg = new MatConv2d(Channels, numClasses, 1);
        RegisterComponents();
    }

    public override int[] Indices => indices;

    public override Tensor Decode(IReadOnlyList<Tensor> maps, long height, long width)
    {
        int levels = maps.Count;
        // Finest first: the earliest block at stride p/2, the last at 2p (more context where the map is coarse).
        var pyramid = new Tensor[levels];
        for (int i = 0; i < levels; i++)
        {
            var x = norms[i].forward(maps[i]);
            pyramid[i] = levels > 1 && i == 0 ? up.forward(x) : levels > 2 && i == levels - 1 ? down.forward(x) : x;
        }
        var lateral = pyramid.Select((x, i) => lateral_convs[i].forward(x)).ToArray();
        for (int i = levels - 1; i > 0; i--)
            lateral[i - 1] = lateral[i - 1] + Resize(lateral[i], lateral[i - 1]);
        var outs = lateral.Select((x, i) => fpn_convs[i].forward(x)).ToArray();
        var fused = fpn_bottleneck.forward(cat(outs.Select(o => Resize(o, outs[0])).ToArray(), 1));
        return F.interpolate(cls_seg.forward(fused), new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false);
    }

    static Tensor Resize(Tensor x, Tensor like) =>
        x.shape[2] == like.shape[2] && x.shape[3] == like.shape[3] ? x
            : F.interpolate(x, new[] { like.shape[2], like.shape[3] }, mode: InterpolationMode.Bilinear, align_corners: false);
}
