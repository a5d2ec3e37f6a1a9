using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Models;

/// <summary>Attention computed head by head on views of the qkv output (the CPU path for few heads, and for every
/// head count without autograd) gives timm's batched formula: outputs and gradients, with a mask and with the
/// class-token-only queries.</summary>
public class AttentionPathTests
{
    /// <summary>timm's Attention.forward, written out: q, k, v as [B, heads, N, head_dim], softmax(q kᵀ/√d + mask) v.</summary>
    static Tensor Reference(Attention attn, Tensor x, Tensor? mask, int queryTokens)
    {
        long b = x.shape[0], n = x.shape[1], c = x.shape[2], heads = attn.NumHeads;
        var qkv = nn.functional.linear(x, ((TorchSharp.Modules.Linear)attn.qkv).weight!, ((TorchSharp.Modules.Linear)attn.qkv).bias)
            .reshape(b, n, 3, heads, c / heads).permute(2, 0, 3, 1, 4);
        Tensor q = qkv[0] * (1.0 / Math.Sqrt(c / heads)), k = qkv[1], v = qkv[2];
        if (queryTokens > 0)
        {
            q = q[.., .., ..queryTokens];
            if (mask is not null) mask = mask[..queryTokens];
        }
        var scores = q.matmul(k.transpose(-2, -1));
        if (mask is not null) scores = scores + mask;
        var y = scores.softmax(-1).matmul(v).transpose(1, 2).reshape(b, q.shape[2], c);
        var proj = (TorchSharp.Modules.Linear)attn.proj;
        return nn.functional.linear(y, proj.weight!, proj.bias);
    }

    [Theory]
    [InlineData(3, true, false, 0)]    // few heads with autograd: head by head
    [InlineData(3, true, true, 0)]
    [InlineData(3, true, false, 1)]    // class-token-only queries
    [InlineData(3, false, true, 1)]
    [InlineData(6, true, false, 0)]    // many heads with autograd: batched
    [InlineData(6, false, true, 0)]    // many heads without autograd: head by head
    [InlineData(6, false, true, 1)]
    public void Matches_timms_batched_formula(int heads, bool withGrad, bool withMask, int queryTokens)
    {
        manual_seed(5);
        using var attn = new Attention(48, heads, qkvBias: true, attnDrop: 0, projDrop: 0);
        attn.train();
        var x = randn(4, 9, 48);
        Tensor? mask = withMask ? triu(full(9, 9, double.NegativeInfinity), 1) : null;   // causal, as CLIP's text tower
        if (!withGrad)
        {
            using var _ = no_grad();
            TensorAssert.Close(Reference(attn, x, mask, queryTokens), attn.forward(x, mask, queryTokens), atol: 1e-5, rtol: 1e-5, what: "output");
            return;
        }
        x.requires_grad_(true);
        var upstream = randn(4, queryTokens > 0 ? queryTokens : 9, 48);
        var inputs = new[] { x }.Concat(attn.parameters()).ToArray();
        var expected = autograd.grad(new[] { Reference(attn, x, mask, queryTokens) }, inputs, new[] { upstream });
        var output = attn.forward(x, mask, queryTokens);
        var actual = autograd.grad(new[] { output }, inputs, new[] { upstream });
        TensorAssert.Close(Reference(attn, x, mask, queryTokens).detach(), output.detach(), atol: 1e-5, rtol: 1e-5, what: "output");
        for (int i = 0; i < inputs.Length; i++)
            TensorAssert.Close(expected[i], actual[i], atol: 1e-5, rtol: 1e-4, what: $"gradient {i}");
    }
}
