using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PeftSharp.Dense;

/// <summary>LayerNorm over the channels of an NCHW map (detectron2's / ViTDet's LayerNorm2d; keys weight, bias).</summary>
public sealed class LayerNorm2d : Module<Tensor, Tensor>
{
    public Parameter weight, bias;
    readonly double eps;

    public LayerNorm2d(long channels, double eps = 1e-6) : base("LayerNorm2d")
    {
        weight = new Parameter(ones(channels));
        bias = new Parameter(zeros(channels));
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var mean = x.mean(new long[] { 1 }, keepdim: true);
        var centred = x - mean;
        var variance = centred.pow(2).mean(new long[] { 1 }, keepdim: true);
        return centred / (variance + eps).sqrt() * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1);
    }
}

/// <summary>torch.nn.GroupNorm written out (statistics over each image's channel groups, then a per-channel affine;
/// keys weight, bias). libtorch's CPU kernel, called through TorchSharp 0.107, returned NaN intermittently for finite
/// 8×8 inputs here (a 1×1 convolution's output), so the head does not use it.</summary>
public sealed class GroupNorm2d : Module<Tensor, Tensor>
{
    public Parameter weight, bias;
    readonly long groups;
    readonly double eps;

    public GroupNorm2d(long groups, long channels, double eps = 1e-5) : base("GroupNorm2d")
    {
        weight = new Parameter(ones(channels));
        bias = new Parameter(zeros(channels));
        this.groups = groups;
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0];
        var g = x.reshape(b, groups, -1);
        var mean = g.mean(new long[] { 2 }, keepdim: true);
        var centred = g - mean;
        var variance = centred.pow(2).mean(new long[] { 2 }, keepdim: true);
        var normed = (centred / (variance + eps).sqrt()).reshape(x.shape);
        return normed * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1);
    }
}

/// <summary>conv → GroupNorm → ReLU, the decoders' building block (GroupNorm: statistics per image, so the small
/// batches of a 2-core CPU train the same as large ones).</summary>
public sealed class ConvNormAct : Module<Tensor, Tensor>
{
    public Module<Tensor, Tensor> conv, norm;

    public ConvNormAct(long inChannels, long outChannels, int kernel) : base("ConvNormAct")
    {
        conv = Conv2d(inChannels, outChannels, kernel, padding: kernel / 2, bias: false);
        norm = new GroupNorm2d(Math.Min(8, outChannels), outChannels);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => functional.relu(norm.forward(conv.forward(x)));
}

/// <summary>Which blocks' outputs a head reads: <paramref name="count"/> blocks evenly spaced ending at the last
/// (depth 12, 3 → 3, 7, 11; depth 6, 3 → 1, 3, 5), as UperNet-on-ViT necks take a few levels.</summary>
public static class BlockIndices
{
    public static int[] Evenly(int depth, int count)
    {
        count = Math.Min(count, depth);
        return Enumerable.Range(1, count).Select(i => (int)Math.Round((double)depth * i / count) - 1).ToArray();
    }
}
