using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Dense;

/// <summary>
/// ViTDet's simple feature pyramid (Li et al. 2022) from the last block's map alone, at strides p/2, p and 2p
/// (a 2×2 transposed convolution, identity, 2×2 max pooling), each level a 1×1 then a 3×3 convolution with
/// LayerNorm2d, as detectron2's SimpleFeaturePyramid.
/// </summary>
public sealed class SimpleFeaturePyramid : nn.Module
{
    public Module<Tensor, Tensor> up, down;
    public ModuleList<Sequential> levels;

    public SimpleFeaturePyramid(int embedDim, int channels) : base("SimpleFeaturePyramid")
    {
        up = new MatUpsample2x(embedDim, embedDim / 2);
        down = MaxPool2d(2, 2);
        levels = new ModuleList<Sequential>(new[] { embedDim / 2, embedDim, embedDim }.Select(inC => Sequential(
            new MatConv2d(inC, channels, 1, bias: false), new LayerNorm2d(channels),
            new MatConv2d(channels, channels, 3, bias: false), new LayerNorm2d(channels))).ToArray());
        RegisterComponents();
    }

    /// <summary>Stride of each level relative to the patch size.</summary>
    public static readonly double[] Scales = { 0.5, 1, 2 };

    public Tensor[] Forward(Tensor map) => new[]
    {
        levels[0].forward(up.forward(map)), levels[1].forward(map), levels[2].forward(down.forward(map)),
    };
}

/// <summary>FCOS's outputs over every location of every level, flattened level after level (row-major within a level).</summary>
public sealed record FcosOutputs(Tensor ClassLogits, Tensor Distances, Tensor Centerness, FcosLocations Locations);

/// <summary>
/// An anchor-free one-stage detector head (FCOS, Tian et al. 2019, with the later refinements: centre sampling,
/// centerness on the regression tower, GIoU loss): two shared towers of 3×3 conv + GroupNorm + ReLU over every
/// pyramid level; per location class logits (sigmoid, focal loss), the distances to the box's four sides
/// (exp of a per-level learned scale times the output, in units of the level's stride) and a centerness logit.
/// </summary>
public sealed class FcosHead : nn.Module
{
    public const int Channels = 64, TowerDepth = 2;
    public SimpleFeaturePyramid neck;
    public Sequential cls_tower, bbox_tower;
    public Module<Tensor, Tensor> cls_logits, bbox_pred, centerness;
    public Parameter scales;
    readonly int patchSize;

    public FcosHead(int embedDim, int patchSize, int numClasses) : base("FcosHead")
    {
        this.patchSize = patchSize;
        NumClasses = numClasses;
        neck = new SimpleFeaturePyramid(embedDim, Channels);
        cls_tower = Sequential(Enumerable.Range(0, TowerDepth).Select(_ => (Module<Tensor, Tensor>)new ConvNormAct(Channels, Channels, 3)).ToArray());
        bbox_tower = Sequential(Enumerable.Range(0, TowerDepth).Select(_ => (Module<Tensor, Tensor>)new ConvNormAct(Channels, Channels, 3)).ToArray());
        cls_logits = new MatConv2d(Channels, numClasses, 3);
        bbox_pred = new MatConv2d(Channels, 4, 3);
        centerness = new MatConv2d(Channels, 1, 3);
        scales = new Parameter(ones(SimpleFeaturePyramid.Scales.Length));
        RegisterComponents();
        using var _ = no_grad();
        // FCOS's initialisation: small normal weights, and a class prior of 0.01 so the focal loss starts calm.
        foreach (var conv in new[] { cls_logits, bbox_pred, centerness }.Cast<MatConv2d>())
        {
            init.normal_(conv.weight, 0, 0.01);
            init.zeros_(conv.bias!);
        }
        ((MatConv2d)cls_logits).bias!.fill_(-Math.Log((1 - 0.01) / 0.01));
    }

    public int NumClasses { get; }

    /// <summary>The pyramid reads the last block only.</summary>
    public static int[] Indices(int depth) => new[] { depth - 1 };

    public double[] Strides => SimpleFeaturePyramid.Scales.Select(s => s * patchSize).ToArray();

    public FcosOutputs Forward(Tensor lastMap)
    {
        var levels = neck.Forward(lastMap);
        var cls = new List<Tensor>();
        var dist = new List<Tensor>();
        var ctr = new List<Tensor>();
        var sizes = new List<(int H, int W)>();
        for (int l = 0; l < levels.Length; l++)
        {
            var x = levels[l];
            long b = x.shape[0];
            sizes.Add(((int)x.shape[2], (int)x.shape[3]));
            var c = cls_tower.forward(x);
            var r = bbox_tower.forward(x);
            cls.Add(cls_logits.forward(c).permute(0, 2, 3, 1).reshape(b, -1, NumClasses));
            // exp(s·x) · stride; the clamp keeps an early wild step from overflowing to inf.
            dist.Add((bbox_pred.forward(r) * scales[l]).clamp_max(10).exp().mul(Strides[l]).permute(0, 2, 3, 1).reshape(b, -1, 4));
            ctr.Add(centerness.forward(r).permute(0, 2, 3, 1).reshape(b, -1));
        }
        return new FcosOutputs(cat(cls, 1), cat(dist, 1), cat(ctr, 1), new FcosLocations(Strides, sizes));
    }
}

/// <summary>Where each flattened location sits: level, stride and its centre in input pixels ((i + ½)·stride).</summary>
public sealed class FcosLocations
{
    public FcosLocations(double[] strides, IReadOnlyList<(int H, int W)> sizes)
    {
        var xs = new List<double>();
        var ys = new List<double>();
        var level = new List<int>();
        for (int l = 0; l < sizes.Count; l++)
            for (int y = 0; y < sizes[l].H; y++)
                for (int x = 0; x < sizes[l].W; x++)
                {
                    xs.Add((x + 0.5) * strides[l]);
                    ys.Add((y + 0.5) * strides[l]);
                    level.Add(l);
                }
        X = xs.ToArray();
        Y = ys.ToArray();
        Level = level.ToArray();
        Strides = strides;
    }

    public double[] X { get; }
    public double[] Y { get; }
    public int[] Level { get; }
    public double[] Strides { get; }
    public int Count => X.Length;
}
