using PeftSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PeftSharp.Models;

/// <summary>
/// Gradient (activation) checkpointing of one transformer block, as timm's <c>set_grad_checkpointing</c>: the forward
/// runs without autograd and keeps only the block's input; the backward runs the block again with autograd and
/// back-propagates through that. Training memory then holds one block's activations at a time instead of every
/// block's, for the cost of a second forward pass.
/// <para>The trainable parameters are inputs of the checkpoint node and their gradients its outputs (PyTorch's
/// non-reentrant form): gradients reach them even where the block's input needs none (a frozen patch embedding), and
/// parameters shared across blocks get each block's share. The recomputation replays the CPU random state (dropout,
/// drop path), the token layout and the autocast precision of the original forward, so its gradients are the same.</para>
/// </summary>
public sealed class GradCheckpoint : SingleTensorFunction<GradCheckpoint>
{
    public override string Name => "BlockCheckpoint";

    /// <summary>Runs <paramref name="block"/> on <paramref name="x"/> checkpointed. <paramref name="trainable"/> are the
    /// parameters that need gradients (the block's and any it shares; others get none).</summary>
    public static Tensor Run(Func<Tensor, TokenLayout, Tensor> block, Tensor x, TokenLayout layout, IReadOnlyList<Tensor> trainable)
    {
        if (x.device_type != DeviceType.CPU)
            throw new PeftSharpException("gradient checkpointing replays the CPU random state only; run it on the CPU");
        var args = new object[trainable.Count + 2];
        args[0] = new Replay(block, layout, layout.Copy(), random.get_rng_state(), Autocast.Current(x.device), trainable);
        args[1] = x;
        for (int i = 0; i < trainable.Count; i++) args[i + 2] = trainable[i];
        return CustomAutograd.Released(apply(args));
    }

    /// <summary>What the backward needs to run the block again exactly as the forward did.</summary>
    sealed record Replay(Func<Tensor, TokenLayout, Tensor> Block, TokenLayout CallerLayout, TokenLayout LayoutAtInput,
                         Tensor RngState, Precision Precision, IReadOnlyList<Tensor> Trainable);

    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var replay = (Replay)vars[0];
        var x = (Tensor)vars[1];
        CustomAutograd.OnForward(ctx);
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("replay", replay);
        // The caller's layout sees the block's changes (prompt counts), as after an ordinary forward.
        return replay.Block(x, replay.CallerLayout);
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
    {
        var replay = (Replay)ctx.get_data("replay");
        using var scope = NewDisposeScope();
        var saved = ctx.get_saved_variables()[0];
        bool inputNeedsGrad = saved.requires_grad;
        var x = saved.detach().requires_grad_(inputNeedsGrad);
        var current = random.get_rng_state();
        Tensor output;
        random.set_rng_state(replay.RngState);
        try
        {
            using (enable_grad())
            using (Autocast.Enter(replay.Precision, x.device))
                output = replay.Block(x, replay.LayoutAtInput.Copy());
        }
        finally
        {
            random.set_rng_state(current);
        }
        var wrt = new List<Tensor>();
        if (inputNeedsGrad) wrt.Add(x);
        wrt.AddRange(replay.Trainable);
        var grads = grad(new[] { output }, wrt, new[] { gradOutput }, false, false, true);
        // One gradient per argument of apply: none for the replay record, then x's, then the parameters'.
        var inputs = new List<Tensor?> { null, inputNeedsGrad ? grads[0] : null };
        inputs.AddRange(grads.Skip(inputNeedsGrad ? 1 : 0));
        return CustomAutograd.HandOver(gradOutput, inputs.ToArray());
    }
}
