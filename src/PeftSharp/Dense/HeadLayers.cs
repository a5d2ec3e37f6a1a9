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

/// <summary>
/// torch.nn.Conv2d (stride 1, "same" padding) as im2col and one matrix product, same keys and initialisation
/// (weight [out, in, k, k], bias [out], PyTorch's kaiming-uniform a = √5 bounds). libtorch's CPU convolution, called
/// through TorchSharp 0.107 on this machine with two threads, returned NaN input gradients intermittently for finite
/// inputs and gradients (autograd anomaly mode names ConvolutionBackward0; with one thread it never did), so the
/// heads do not use it: their convolutions are small, and the matrix product is the kernel the backbone trusts.
/// </summary>
public sealed class MatConv2d : Module<Tensor, Tensor>
{
    public Parameter weight;
    public Parameter? bias;
    readonly int kernel;

    public MatConv2d(long inChannels, long outChannels, int kernel, bool bias = true) : base("MatConv2d")
    {
        this.kernel = kernel;
        double bound = 1 / Math.Sqrt(inChannels * kernel * kernel);
        weight = new Parameter(empty(outChannels, inChannels, kernel, kernel).uniform_(-bound, bound));
        this.bias = bias ? new Parameter(empty(outChannels).uniform_(-bound, bound)) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], o = weight.shape[0];
        Tensor columns, kernelRows;
        if (kernel == 1)
        {
            columns = x.reshape(b, c, h * w);
            kernelRows = weight.reshape(o, c);
        }
        else
        {
            // im2col as k² shifted views of the zero-padded map, stacked (ky, kx, channel): TorchSharp's F.unfold took
            // ~70 ms for an [8, 64, 16, 16] map here, these slices a fraction of that.
            int pad = kernel / 2;
            var padded = functional.pad(x, new long[] { pad, pad, pad, pad });
            var shifts = new List<Tensor>(kernel * kernel);
            for (int dy = 0; dy < kernel; dy++)
                for (int dx = 0; dx < kernel; dx++)
                    shifts.Add(padded[.., .., dy..(int)(dy + h), dx..(int)(dx + w)]);
            columns = cat(shifts, 1).reshape(b, kernel * kernel * c, h * w);
            kernelRows = weight.permute(0, 2, 3, 1).reshape(o, -1);
        }
        var y = kernelRows.matmul(columns);                                            // [B, out, H·W]
        if (bias is not null) y = y + bias.view(1, -1, 1);
        return y.reshape(b, o, h, w);
    }
}


/// <summary>torch.nn.ConvTranspose2d with kernel = stride = 2 (weight [in, out, 2, 2], bias [out]) as one matrix
/// product and a pixel rearrangement: each input pixel writes its own 2×2 output block (see <see cref="MatConv2d"/>
/// for why not libtorch's kernel).</summary>
public sealed class MatUpsample2x : Module<Tensor, Tensor>
{
    public Parameter weight, bias;

    public MatUpsample2x(long inChannels, long outChannels) : base("MatUpsample2x")
    {
        double bound = 1 / Math.Sqrt(outChannels * 4);   // PyTorch's ConvTranspose fan-in: weight.size(1) · k · k
        weight = new Parameter(empty(inChannels, outChannels, 2, 2).uniform_(-bound, bound));
        bias = new Parameter(empty(outChannels).uniform_(-bound, bound));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], o = weight.shape[1];
        var y = x.permute(0, 2, 3, 1).reshape(b * h * w, c).matmul(weight.reshape(c, o * 4));   // [B·H·W, out·2·2]
        y = y.reshape(b, h, w, o, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, o, 2 * h, 2 * w);
        return y + bias.view(1, -1, 1, 1);
    }
}

/// <summary>torch.nn.GroupNorm written out (statistics over each image's channel groups, then a per-channel affine;
/// keys weight, bias). libtorch's CPU kernel, called through TorchSharp 0.107, returned NaN intermittently for finite
/// 8×8 inputs here with two threads (as its convolution did, see <see cref="MatConv2d"/>), so the heads do not use it.</summary>
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
        conv = new MatConv2d(inChannels, outChannels, kernel);
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
