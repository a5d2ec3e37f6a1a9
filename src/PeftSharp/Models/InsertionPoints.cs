using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Models;

/// <summary>
/// Where a tuner can sit inside a transformer block. The block computes, for each of its two branches
/// (attention, MLP):  h = norm(x) → [Input] → sublayer → [Output] → + [Parallel*] → ls → drop_path → [Scale] → x + …
/// Input/Output are sequential (the tuner maps the tensor), the Parallel points add the tuner's output to the
/// sublayer's, fed either the block's pre-norm stream (ParallelResidual) or the normed input (ParallelNormed).
/// BlockInput/BlockOutput see the whole token sequence before and after the block (prompt insertion).
/// BetweenBranches is the residual stream after the attention branch, before norm2: a tuner there maps the stream that
/// both the MLP branch and its residual read (SCT's channel adapter and Mona's first module sit here).
/// </summary>
public enum InsertionPoint
{
    BlockInput,
    AttnInput, AttnOutput, AttnParallelResidual, AttnParallelNormed, AttnScale,
    BetweenBranches,
    MlpInput, MlpOutput, MlpParallelResidual, MlpParallelNormed, MlpScale,
    BlockOutput,
}

/// <summary>Where a tuner can sit at the level of the whole encoder.</summary>
public enum EncoderPoint
{
    /// <summary>Tokens after the class token and position embedding were added, before norm_pre and block 0.</summary>
    AfterEmbedding,
}

/// <summary>
/// How the token sequence is laid out during one forward pass: [prefix (class/register) tokens][prompts][patches].
/// Tuners that insert prompts update <see cref="Prompts"/>; tuners that need the patch grid (ConvPass) read it.
/// A video encoder's patches are <see cref="Frames"/> grids, time-major (frame 0's rows, then frame 1's, ...).
/// </summary>
public sealed class TokenLayout
{
    public TokenLayout(int prefixTokens, int gridHeight, int gridWidth, int frames = 1)
    {
        PrefixTokens = prefixTokens;
        GridHeight = gridHeight;
        GridWidth = gridWidth;
        Frames = frames;
    }

    public int PrefixTokens { get; }
    public int Prompts { get; set; }
    public int GridHeight { get; }
    public int GridWidth { get; }
    /// <summary>Temporal positions of the patch tokens: 1 for an image, T/tubelet for a clip.</summary>
    public int Frames { get; }

    /// <summary>Index of the first patch token.</summary>
    public int PatchStart => PrefixTokens + Prompts;
    public bool HasGrid => GridHeight > 0 && GridWidth > 0;

    /// <summary>An independent copy (tuners change <see cref="Prompts"/> as a forward pass goes).</summary>
    public TokenLayout Copy() => new(PrefixTokens, GridHeight, GridWidth, Frames) { Prompts = Prompts };

    /// <summary>A layout for sequences that are not image patches (the CLIP text tower).</summary>
    public static TokenLayout Sequence() => new(0, 0, 0);
}

/// <summary>An encoder of patch tokens, image or video: what encoder-level tuners (shallow prompts) and prompt
/// initialisation need of it.</summary>
public interface IPatchEncoder
{
    int EmbedDim { get; }
    /// <summary>Spatial patch side in pixels.</summary>
    int PatchSize { get; }
    bool GradCheckpointing { get; }
    PointAttachments<EncoderPoint, EncoderTuner> Tuners { get; }
    void Attach(string name, EncoderTuner tuner, params EncoderPoint[] points);
}

/// <summary>A module called at insertion points of type <typeparamref name="TPoint"/>.</summary>
public interface ITuner<TPoint>
{
    Tensor Apply(TPoint point, Tensor x, TokenLayout layout);
}

/// <summary>A trainable module a tuner attaches to one or more insertion points of a block.</summary>
public abstract class BlockTuner : nn.Module, ITuner<InsertionPoint>
{
    protected BlockTuner(string name) : base(name) { }

    /// <summary>Maps the tensor seen at <paramref name="point"/>; for parallel points, returns the term to add.</summary>
    public abstract Tensor Apply(InsertionPoint point, Tensor x, TokenLayout layout);

    /// <summary>True when the outputs <see cref="Apply"/> gives the leading prefix tokens (class, registers) depend on
    /// those tokens alone, and Apply accepts a sequence cut after them: so a block whose only reader is the head may
    /// run this tuner on the class token alone and get the same values for it. Every tuner that maps tokens one by one
    /// has this; one that mixes them (a convolution over the patch grid) has it when the prefix tokens stay out of the
    /// mixing.</summary>
    public virtual bool PrefixTokensStandAlone => false;
}

/// <summary>A trainable module a tuner attaches to the encoder (prompt tokens for the whole encoder).</summary>
public abstract class EncoderTuner : nn.Module, ITuner<EncoderPoint>
{
    protected EncoderTuner(string name) : base(name) { }

    public abstract Tensor Apply(EncoderPoint point, Tensor x, TokenLayout layout);
}

/// <summary>A trainable module that extends an attention layer's keys and values (prefix tuning).</summary>
public abstract class KeyValueTuner : nn.Module
{
    protected KeyValueTuner(string name) : base(name) { }

    /// <summary>Given k and v as [B, heads, N, head_dim], returns the extended pair.</summary>
    public abstract (Tensor Keys, Tensor Values) Extend(Tensor keys, Tensor values);
}
