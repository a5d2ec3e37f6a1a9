using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PeftSharp.Interop;

/// <summary>
/// Memory hygiene for TorchSharp (0.107) custom autograd functions, which otherwise hold activation-sized buffers
/// that plain autograd nodes do not:
/// <list type="bullet">
/// <item>every call allocates an uninitialised tensor the size of each output, kept until the graph is freed, to
/// stand in as zeros for an output gradient that never arrives. A function whose one output always receives its
/// gradient does not need it: <see cref="ReleaseOutputPlaceholders"/> frees it right after the call.</item>
/// <item>the output gradient handed to backward, and the gradients backward returns, are .NET handles in the
/// caller's dispose scope: autograd takes its own reference to the returned ones when backward returns, but the
/// handles keep every layer's gradients alive until the training step ends. <see cref="HandOver"/> frees the
/// output gradient at once and the returned ones when the next function's backward hands over its own.</item>
/// </list>
/// Before these, the fused low-rank layers of FacT on ViT-Tiny at batch 64 trained in about 0.4 GB more than plain
/// autograd on the same formula.
/// </summary>
public static class CustomAutograd
{
    [ThreadStatic] static AutogradContext? lastForward;
    [ThreadStatic] static List<Tensor>? handedOver;

    static readonly FieldInfo? NodeField = typeof(AutogradContext).GetField("_node", BindingFlags.NonPublic | BindingFlags.Instance);
    static readonly FieldInfo? CacheField = typeof(autograd).GetNestedType("Node`1", BindingFlags.NonPublic)
        ?.GetField("_outputCache", BindingFlags.NonPublic | BindingFlags.Instance);

    /// <summary>Whether this TorchSharp keeps the placeholders where <see cref="ReleaseOutputPlaceholders"/> looks.</summary>
    public static bool CanReleaseOutputPlaceholders => NodeField is not null && CacheField is not null;

    /// <summary>Call at the start of a function's forward: its output gradients are always materialised by the
    /// caller (the function has one output, used), and the call's placeholders can be released afterwards.</summary>
    public static void OnForward(AutogradContext ctx)
    {
        ctx.set_materialize_grads(false);
        lastForward = ctx;
    }

    /// <summary>Frees the output-sized placeholders of the last function called on this thread. Returns false where
    /// this TorchSharp keeps them elsewhere (the memory is then held as before; nothing else changes).</summary>
    public static bool ReleaseOutputPlaceholders()
    {
        var ctx = lastForward;
        lastForward = null;
        if (ctx is null || NodeField?.GetValue(ctx) is not object node) return false;
        if (node.GetType().GetField("_outputCache", BindingFlags.NonPublic | BindingFlags.Instance)?.GetValue(node) is not List<Tensor> cache)
            return false;   // (Node<T> is generic: the field is read from the closed type)
        foreach (var placeholder in cache) placeholder?.Dispose();
        cache.Clear();
        return true;
    }

    /// <summary>The output of a function's apply, after <see cref="ReleaseOutputPlaceholders"/>: call as
    /// <c>Released(F.apply(...))</c> for a function whose forward called <see cref="OnForward"/>.</summary>
    public static Tensor Released(Tensor output)
    {
        ReleaseOutputPlaceholders();
        return output;
    }

    /// <summary>What a backward returns: <paramref name="gradients"/>, one per argument of apply (null for a non-tensor
    /// argument or where none is needed; never <paramref name="outputGrad"/> itself). Frees <paramref name="outputGrad"/>
    /// (consumed by now) and the handles the previous backward on this thread handed over; these stay in the caller's
    /// scope as well, so the last ones go with it.</summary>
    public static List<Tensor> HandOver(Tensor outputGrad, params Tensor?[] gradients)
    {
        outputGrad.Dispose();
        if (handedOver is { } previous)
            foreach (var handle in previous) handle.Dispose();
        handedOver = new List<Tensor>();
        var result = new List<Tensor>();
        foreach (var g in gradients)
        {
            if (g is not null)
            {
                g.MoveToOuterDisposeScope();
                handedOver.Add(g);
            }
            result.Add(g!);
        }
        return result;
    }
}
