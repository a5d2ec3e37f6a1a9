using PeftSharp.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PeftSharp.Tuners;

/// <summary>
/// The update a low-rank tuner adds to a frozen Linear, y = x Wᵀ + b + s · up(t), as one autograd node per layer.
/// t holds the low-rank activations of each row ([rows, chunks·r]); up maps each r-wide chunk through U ([out/chunks,
/// r]) into its own slice of the output row (LoRA: one chunk, U = B; FacT: a chunk per q/k/v section or MLP slice,
/// U = v). Left to autograd, the same formula costs about twice its FLOPs on the CPU: the update is written into a
/// copy of the base output where it spans several chunks, ∂U comes from the tall gᵀ t orientation that MKL runs at a
/// third of the speed of (tᵀ g)ᵀ, and the input's gradient is summed from separate parts. The nodes here write the
/// update into the base output in place, take the fast orientations, and, where no dropout sits between x and the
/// update (LoRA's x → A → B), fold s·U·D into the weight so the forward and ∂x are single products. DoRA's rescaled
/// update has a node of its own (<see cref="Rescaled"/>).
/// </summary>
public static class LowRankUpdate
{
    /// <summary>x Wᵀ + b on rows: the product, then the bias added in place. F.linear on rows is addmm, which copies the
    /// bias into the output and accumulates the product onto it with MKL's β = 1 kernel; that measured slower here, by
    /// 0.2–1.3 % of a ViT-Tiny LoRA or FacT-TK training step and 1.4–2.8 % of their unmerged inference (the model's
    /// token-shaped Linears already take this form: TorchSharp computes them as matmul, then add).</summary>
    public static Tensor Affine(Tensor rows, Tensor weight, Tensor? bias)
    {
        var y = rows.mm(weight.t());
        return bias is null ? y : y.add_(bias);
    }

    /// <summary>True when the fused nodes can stand in for <paramref name="baseLayer"/>: a plain Linear whose weight
    /// and bias are frozen (their gradients are not computed), on float32 CPU rows (where they were measured, and
    /// where the dropout masks are drawn) with no autocast in force.</summary>
    public static bool Fusable(nn.Module<Tensor, Tensor> baseLayer, Tensor rows) =>
        Interop.CpuOnly.FusedAutogradNodes(rows.device_type)
        && baseLayer is Linear { weight: { requires_grad: false, dtype: ScalarType.Float32 } } linear
        && linear.bias is not { requires_grad: true }
        && rows.dtype == ScalarType.Float32
        && Autocast.Current(rows.device) == Precision.Float32;

    /// <summary>Whether an update of rank <paramref name="rank"/> with no dropout between its factors is cheaper folded
    /// into the weight for a product on <paramref name="rows"/>: folding computes and writes a weight-sized matrix
    /// (about out·in·rank multiply-adds), the unfolded form passes once more over the output and runs the low-rank
    /// products (about rows·rank·(in + out)). Measured here (2 threads), LoRA r=8 on qkv: at ViT-Tiny's 4160 rows,
    /// 192 → 576, folding added 0.08–0.13 ms to the 3.5 ms product and the unfolded update 0.3–0.38; at ViT-B/32's
    /// 800 rows (batch 16), 768 → 2304, folding added 1.2–1.5 ms to 11 and the unfolded update 0.16–0.39. In units of
    /// one output element's pass: a weight element costs about 8, and 12 multiply-adds cost about 1.</summary>
    public static bool FoldingPays(Tensor rows, Linear linear, long rank)
    {
        long outFeatures = linear.weight!.shape[0], inFeatures = linear.weight.shape[1];
        double folded = outFeatures * inFeatures * (8 + rank / 12.0);
        double unfolded = rows.shape[0] * (outFeatures + rank * (inFeatures + outFeatures) / 12.0);
        return folded <= unfolded;
    }

    /// <summary>x Wᵀ + b + s · up(t): <paramref name="t"/> is [rows, chunks·r], <paramref name="up"/> is [out/chunks, r].</summary>
    public static Tensor AddUp(Tensor rows, Linear linear, Tensor t, Tensor up, double scale) =>
        CustomAutograd.Released(UpdatedLinear.apply(new Frozen(linear.weight!, linear.bias, scale), rows, t.contiguous(), up));

    /// <summary>LoRA with dropout on its input, x Wᵀ + b + s · dropout(x) Dᵀ Uᵀ (<paramref name="down"/> D, [r, in];
    /// <paramref name="up"/> U, [out, r]; probability <paramref name="dropout"/>), as one node that keeps x and the
    /// rank-sized dropout(x) Dᵀ for the backward and redraws the mask from its seed where ∂D needs the dropped input.
    /// Through autograd (a dropout module, then A, then <see cref="AddUp"/>) the layer also kept the mask and the
    /// dropped input, two input-sized buffers: on ViT-Tiny at batch 64, 77 MB over LoRA's 12 qkv layers.</summary>
    public static Tensor DroppedInput(Tensor rows, Linear linear, Tensor down, Tensor up, double dropout, double scale) =>
        CustomAutograd.Released(InputDroppedLinear.apply(new Frozen(linear.weight!, linear.bias, scale, dropout), rows, down, up));

    /// <summary>x (W + s·U D)ᵀ + b for an update with no dropout between its down (<paramref name="down"/>, [r, in])
    /// and up (<paramref name="up"/>, [out, r]) products.</summary>
    public static Tensor Folded(Tensor rows, Linear linear, Tensor down, Tensor up, double scale) =>
        CustomAutograd.Released(FoldedLinear.apply(new Frozen(linear.weight!, linear.bias, scale), rows, down, up));

    /// <summary>FacT's update, x Wᵀ + b + s · up(dropout(down(x) M)), as one node: <paramref name="down"/> (u, [d,
    /// in/inChunks]) maps each of the row's input chunks (fc2 reads its input as R slices of the embedding width),
    /// <paramref name="core"/> M ([inChunks·d, outChunks·d]) mixes them, dropout with probability
    /// <paramref name="dropout"/> (0 when inactive) acts on M's output, and <paramref name="up"/> (v, [out/outChunks,
    /// d]) maps each d-wide chunk into its slice of the output. With no core, <paramref name="down"/> ([outChunks·d,
    /// in]) already holds it (down(x) M as one product, for layers with one output chunk). The backward writes the
    /// down path's share of ∂x into the base's ∂x in place instead of summing two activation-sized gradients.</summary>
    public static Tensor Factored(Tensor rows, Linear linear, Tensor down, Tensor? core, double dropout, Tensor up, double scale)
    {
        var frozen = new Frozen(linear.weight!, linear.bias, scale, dropout);
        return CustomAutograd.Released(core is null
            ? FactoredLinear.apply(frozen, rows, down, up)
            : FactoredLinear.apply(frozen, rows, down, core, up));
    }

    /// <summary>DoRA's update in peft's formulation, as one node: with W' = W + s·U D, the norm ‖W'‖ of each output row
    /// a constant (not differentiated), m/‖W'‖ the rescale and d the dropped input (probability
    /// <paramref name="dropout"/>, 0 when inactive), y = x Wᵀ + b + (m/‖W'‖ − 1) ⊙ d Wᵀ + m/‖W'‖ ⊙ s·d Dᵀ Uᵀ, computed as
    /// (x − d) Wᵀ + b + m/‖W'‖ ⊙ d W'ᵀ (with no dropout, b + m/‖W'‖ ⊙ x W'ᵀ). Left to autograd the formula writes, reads
    /// back and differentiates six output-sized temporaries per layer; here the forward has two products and one
    /// output-sized pass, the backward ∂x = g W + mask ⊙ g (diag(m/‖W'‖) W' − W) as two products, and ∂m, ∂D, ∂U come
    /// from the saved d W'ᵀ and d without a weight-sized gradient.</summary>
    public static Tensor Rescaled(Tensor rows, Linear linear, Tensor down, Tensor up, Tensor magnitude, double dropout, double scale) =>
        CustomAutograd.Released(RescaledLinear.apply(new Frozen(linear.weight!, linear.bias, scale, dropout), rows, down, up, magnitude));

    /// <summary>The Euclidean norm of each output row of <paramref name="weight"/> ([out, in] → [out]): DoRA's ‖W'‖.</summary>
    public static Tensor RowNorms(Tensor weight) => weight.pow(2).sum(1).sqrt();

    /// <summary>The frozen base and the update's scale, carried through the node beside its tensor inputs.</summary>
    sealed record Frozen(Tensor Weight, Tensor? Bias, double Scale, double Dropout = 0);

    static void Save(AutogradContext ctx, Frozen frozen, List<Tensor> tensors)
    {
        ctx.save_for_backward(tensors);
        ctx.save_data("frozen", frozen);
    }

    static (Frozen Frozen, List<Tensor> Saved) Restore(AutogradContext ctx) =>
        ((Frozen)ctx.get_data("frozen"), ctx.get_saved_variables());

    /// <summary>A contiguous copy of <paramref name="rows"/> times the dropout mask of <paramref name="seed"/>.</summary>
    static Tensor DroppedCopy(Tensor rows, ulong seed, double p)
    {
        var dropped = rows.is_contiguous() ? rows.clone() : rows.contiguous();
        ParallelDropout.MultiplyByMask_(dropped, seed, p);
        return dropped;
    }

    /// <summary>x Wᵀ + b + s · up(t), the update written into the base output in place: each r-wide chunk of t adds
    /// into its own slice, so as [rows·chunks, out/chunks] the slices are rows of one product.</summary>
    static Tensor BasePlusUp(Frozen frozen, Tensor rows, Tensor t, Tensor up)
    {
        var y = Affine(rows, frozen.Weight, frozen.Bias);
        using (var slices = y.view(-1, up.shape[0]))
        using (var chunks = t.view(-1, up.shape[1]))
            slices.addmm_(chunks, up.t(), beta: 1, alpha: (float)frozen.Scale);
        return y;
    }

    /// <summary>The output's gradient as the rows of <see cref="BasePlusUp"/>'s product, [rows·chunks, out/chunks]
    /// (it may arrive strided).</summary>
    static Tensor UpSlices(Tensor grad, Tensor up) => grad.reshape(-1, up.shape[0]);

    /// <summary>∂t of <see cref="BasePlusUp"/>: s · slices · up, in t's layout.</summary>
    static Tensor GradThroughUp(Tensor slices, Tensor t, Tensor up, double scale) =>
        slices.mm(up).mul_((float)scale).view(t.shape);

    /// <summary>∂up of <see cref="BasePlusUp"/>, or null where up needs none: s · (chunksᵀ slices)ᵀ.</summary>
    static Tensor? GradOfUp(Tensor slices, Tensor t, Tensor up, double scale) =>
        up.requires_grad ? TallProduct(t.view(-1, up.shape[1]), slices).mul_((float)scale).t() : null;

    sealed class UpdatedLinear : SingleTensorFunction<UpdatedLinear>
    {
        public override string Name => "LowRankUpdatedLinear";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var (frozen, rows, t, up) = ((Frozen)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
            CustomAutograd.OnForward(ctx);
            Save(ctx, frozen, new List<Tensor> { rows, t, up });
            return BasePlusUp(frozen, rows, t, up);
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var (frozen, saved) = Restore(ctx);
            var (rows, t, up) = (saved[0], saved[1], saved[2]);
            var gradRows = rows.requires_grad ? grad.mm(frozen.Weight) : null;
            var slices = UpSlices(grad, up);
            var gradT = t.requires_grad ? GradThroughUp(slices, t, up, frozen.Scale) : null;
            var gradUp = GradOfUp(slices, t, up, frozen.Scale);
            return CustomAutograd.HandOver(grad, null, gradRows, gradT, gradUp);
        }
    }

    sealed class InputDroppedLinear : SingleTensorFunction<InputDroppedLinear>
    {
        public override string Name => "LowRankInputDroppedLinear";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var (frozen, rows, down, up) = ((Frozen)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
            CustomAutograd.OnForward(ctx);
            // The mask and the dropped input are not kept: the backward redraws them from the seed.
            ulong seed = ParallelDropout.DrawSeed();
            Tensor t;
            using (var dropped = DroppedCopy(rows, seed, frozen.Dropout)) t = dropped.mm(down.t());
            Save(ctx, frozen, new List<Tensor> { rows, down, up, t });
            ctx.save_data("seed", seed);
            return BasePlusUp(frozen, rows, t, up);
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var (frozen, saved) = Restore(ctx);
            var seed = (ulong)ctx.get_data("seed");
            var (rows, down, up, t) = (saved[0], saved[1], saved[2], saved[3]);
            var slices = UpSlices(grad, up);
            var gradUp = GradOfUp(slices, t, up, frozen.Scale);
            var gradT = GradThroughUp(slices, t, up, frozen.Scale);   // s · g U, [rows, r]
            var gradDown = down.requires_grad ? TallProduct(gradT, DroppedCopy(rows, seed, frozen.Dropout)) : null;
            Tensor? gradRows = null;
            if (rows.requires_grad)
            {
                // mask ⊙ (s · g U D), then g W accumulated onto it by the product itself.
                gradRows = gradT.mm(down);
                ParallelDropout.MultiplyByMask_(gradRows, seed, frozen.Dropout);
                gradRows.addmm_(slices, frozen.Weight);
            }
            return CustomAutograd.HandOver(grad, null, gradRows, gradDown, gradUp);
        }
    }

    sealed class FoldedLinear : SingleTensorFunction<FoldedLinear>
    {
        public override string Name => "LowRankFoldedLinear";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var (frozen, rows, down, up) = ((Frozen)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
            CustomAutograd.OnForward(ctx);
            var weight = frozen.Weight.addmm(up, down, beta: 1, alpha: (float)frozen.Scale);
            Save(ctx, frozen, new List<Tensor> { rows, down, up, weight });
            return Affine(rows, weight, frozen.Bias);
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var (frozen, saved) = Restore(ctx);
            var (rows, down, up, weight) = (saved[0], saved[1], saved[2], saved[3]);
            float s = (float)frozen.Scale;
            var gradRows = rows.requires_grad ? grad.mm(weight) : null;
            // ∂U = s·gᵀ(x Dᵀ) and ∂D = s·(g U)ᵀ x, each in the orientation with the short side first.
            var gradUp = up.requires_grad ? TallProduct(rows.mm(down.t()), grad).mul_(s).t() : null;
            var gradDown = down.requires_grad ? TallProduct(grad.mm(up), rows).mul_(s) : null;
            return CustomAutograd.HandOver(grad, null, gradRows, gradDown, gradUp);
        }
    }

    sealed class FactoredLinear : SingleTensorFunction<FactoredLinear>
    {
        public override string Name => "LowRankFactoredLinear";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var (frozen, rows, down) = ((Frozen)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
            var (core, up) = vars.Length == 5 ? ((Tensor?)vars[3], (Tensor)vars[4]) : (null, (Tensor)vars[3]);
            CustomAutograd.OnForward(ctx);
            // [rows, inChunks·d] through the core, or straight to M's output when down holds the core.
            Tensor? lowIn = core is null ? null : rows.reshape(-1, down.shape[1]).mm(down.t()).view(rows.shape[0], -1);
            var lowOut = lowIn is null ? rows.mm(down.t()) : lowIn.mm(core!);   // [rows, outChunks·d]
            // The dropout mask is not kept: the backward redraws it from its seed.
            ulong? maskSeed = frozen.Dropout > 0 ? ParallelDropout.DrawSeed() : null;
            if (maskSeed is ulong seed) ParallelDropout.MultiplyByMask_(lowOut, seed, frozen.Dropout);
            Save(ctx, frozen, new List<Tensor?> { rows, down, core, up, lowIn, lowOut }.OfType<Tensor>().ToList());
            ctx.save_data("layout", (HasCore: core is not null, MaskSeed: maskSeed));
            return BasePlusUp(frozen, rows, lowOut, up);
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var (frozen, saved) = Restore(ctx);
            var (hasCore, maskSeed) = ((bool HasCore, ulong? MaskSeed))ctx.get_data("layout");
            var next = saved.GetEnumerator();
            Tensor Next() { next.MoveNext(); return next.Current; }
            var (rows, down) = (Next(), Next());
            var core = hasCore ? Next() : null;
            var up = Next();
            var lowIn = hasCore ? Next() : null;
            var lowOut = Next();
            var slices = UpSlices(grad, up);
            var gradUp = GradOfUp(slices, lowOut, up, frozen.Scale);
            var gradLowOut = GradThroughUp(slices, lowOut, up, frozen.Scale);
            if (maskSeed is ulong seed) ParallelDropout.MultiplyByMask_(gradLowOut, seed, frozen.Dropout);
            var gradCore = core is { requires_grad: true } ? TallProduct(lowIn!, gradLowOut) : null;
            // The gradient at down's output, as rows of down's inputs: [rows·inChunks, d], or [rows, outChunks·d].
            var gradLowIn = core is null ? gradLowOut : gradLowOut.mm(core.t()).view(-1, down.shape[0]);
            var inputChunks = rows.reshape(-1, down.shape[1]);
            var gradDown = down.requires_grad ? TallProduct(gradLowIn, inputChunks) : null;
            Tensor? gradRows = null;
            if (rows.requires_grad)
            {
                gradRows = grad.mm(frozen.Weight);
                using var gradChunks = gradRows.view(-1, down.shape[1]);
                gradChunks.addmm_(gradLowIn, down);
            }
            return hasCore
                ? CustomAutograd.HandOver(grad, null, gradRows, gradDown, gradCore, gradUp)
                : CustomAutograd.HandOver(grad, null, gradRows, gradDown, gradUp);
        }
    }

    sealed class RescaledLinear : SingleTensorFunction<RescaledLinear>
    {
        public override string Name => "LowRankRescaledLinear";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var (frozen, rows, down, up, magnitude) = ((Frozen)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (Tensor)vars[4]);
            CustomAutograd.OnForward(ctx);
            var updated = frozen.Weight.addmm(up, down, beta: 1, alpha: (float)frozen.Scale);   // W'
            var norms = RowNorms(updated);
            var rescale = magnitude / norms;
            // The mask is not kept: the backward redraws it from its seed.
            ulong? maskSeed = frozen.Dropout > 0 ? ParallelDropout.DrawSeed() : null;
            var dropped = maskSeed is ulong seed ? DroppedCopy(rows, seed, frozen.Dropout) : rows;
            var projected = dropped.mm(updated.t());   // d W'ᵀ, kept for ∂m
            Tensor y;
            if (maskSeed is null) y = frozen.Bias is Tensor b ? b.addcmul(projected, rescale, 1) : projected.mul(rescale);
            else
            {
                using (var kept = rows - dropped) y = Affine(kept, frozen.Weight, frozen.Bias);
                y.addcmul_(projected, rescale, 1);
            }
            Save(ctx, frozen, new List<Tensor> { dropped, down, up, magnitude, updated, norms, projected });
            ctx.save_data("layout", (MaskSeed: maskSeed, RowsNeedGrad: rows.requires_grad));
            return y;
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var (frozen, saved) = Restore(ctx);
            var (maskSeed, rowsNeedGrad) = ((ulong? MaskSeed, bool RowsNeedGrad))ctx.get_data("layout");
            var (dropped, down, up, magnitude, updated, norms, projected) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6]);
            float s = (float)frozen.Scale;
            var rescale = magnitude / norms;
            var gradMagnitude = magnitude.requires_grad ? (grad * projected).sum(0L).div_(norms) : null;
            // Through d W'ᵀ with W' = W + s·U D: ∂U = s·diag(m/‖W'‖) gᵀ (d Dᵀ), ∂D = s·(g diag(m/‖W'‖) U)ᵀ d.
            var gradUp = up.requires_grad ? TallProduct(dropped.mm(down.t()), grad).mul_(rescale * s).t() : null;
            var gradDown = down.requires_grad ? TallProduct(grad.mm(up * rescale.unsqueeze(1)), dropped).mul_(s) : null;
            Tensor? gradRows = null;
            if (rowsNeedGrad)
            {
                var rescaled = updated * rescale.unsqueeze(1);   // diag(m/‖W'‖) W' (the saved W' stays intact for a retained graph)
                if (maskSeed is ulong seed)
                {
                    gradRows = grad.mm(frozen.Weight);
                    var gradDropped = grad.mm(rescaled.sub_(frozen.Weight));
                    ParallelDropout.MultiplyByMask_(gradDropped, seed, frozen.Dropout);
                    gradRows.add_(gradDropped);
                }
                else gradRows = grad.mm(rescaled);
            }
            return CustomAutograd.HandOver(grad, null, gradRows, gradDown, gradUp, gradMagnitude);
        }
    }

    /// <summary>aᵀ b for tall <paramref name="a"/> [n, d] and <paramref name="b"/> [n, m]: one slice of the n rows per
    /// thread as a batched product, summed. MKL parallelises the plain product poorly over its long shared dimension:
    /// for FacT's ∂v and ∂u on ViT-Tiny at batch 64 (n = 4160–16640, m = 192, 2 threads) the batched form took
    /// 0.62–0.85 ms where the plain one took 0.84–1.2, LoRA's ∂A 0.055 against 0.10 (∂B, m = 576, level), and FacT-TK's
    /// ∂M for qkv ([4160, 32]ᵀ [4160, 96]) 0.12 against 0.21.</summary>
    static Tensor TallProduct(Tensor a, Tensor b)
    {
        int parts = get_num_threads();
        long n = a.shape[0];
        if (parts < 2 || n % parts != 0 || n / parts < 1024) return a.t().mm(b);
        return a.reshape(parts, n / parts, a.shape[1]).transpose(1, 2).bmm(b.reshape(parts, n / parts, b.shape[1])).sum(0L);
    }
}
