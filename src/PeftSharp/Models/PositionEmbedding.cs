using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Models;

/// <summary>timm's layers/pos_embed.py: the learned absolute position table at another patch grid.</summary>
public static class PositionEmbedding
{
    /// <summary>timm's resample_abs_pos_embed: the patch part of <paramref name="posEmbed"/> [1, prefix + h·w, D], laid
    /// out as an h×w image of D channels, resized bicubically with antialiasing (PyTorch's _upsample_bicubic2d_aa, as
    /// timm's default) to <paramref name="newSize"/>; the prefix tokens' positions are kept as they are. The table is
    /// returned unchanged when it already has the new square grid (timm's early return). The old grid is square unless
    /// <paramref name="oldSize"/> is given.</summary>
    public static Tensor Resample(Tensor posEmbed, (int H, int W) newSize, int numPrefixTokens, (int H, int W)? oldSize = null)
    {
        long positions = posEmbed.shape[1], d = posEmbed.shape[2];
        if (positions == (long)newSize.H * newSize.W + numPrefixTokens && newSize.H == newSize.W) return posEmbed;
        long patches = positions - numPrefixTokens;
        var old = oldSize ?? SquareGrid(patches);
        if ((long)old.H * old.W != patches)
            throw new PeftSharpException("pos_embed", $"{patches} patch positions do not form a {old.H}x{old.W} grid");
        var grid = posEmbed[.., numPrefixTokens..].reshape(1, old.H, old.W, d).permute(0, 3, 1, 2).to(float32);
        var resized = F.interpolate(grid, new long[] { newSize.H, newSize.W }, mode: InterpolationMode.Bicubic,
                                    align_corners: false, antialias: true)
                       .permute(0, 2, 3, 1).reshape(1, (long)newSize.H * newSize.W, d).to(posEmbed.dtype);
        return numPrefixTokens == 0 ? resized : cat(new[] { posEmbed[.., ..numPrefixTokens], resized }, 1);
    }

    static (int H, int W) SquareGrid(long patches)
    {
        int side = (int)Math.Round(Math.Sqrt(patches));
        if ((long)side * side != patches)
            throw new PeftSharpException("pos_embed", $"{patches} patch positions are not a square grid");
        return (side, side);
    }
}
