using PeftSharp.Models;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>VQT (Tu et al., CVPR 2023) in the study code's combined form with the paper's query outputs: the count, the
/// logits against an independent transcription, the untouched token stream, training.</summary>
public class VqtTests
{
    [Fact]
    public void Parameter_count_on_vit_b16_at_10_queries_is_92281() => Assert.Equal(92_281L, PrePassKit.VitBaseCount("vqt", "prompts=10"));

    [Fact]
    public void Parameter_count_is_12_n_d_plus_12_n_plus_1() => Assert.Equal(12L * 4 * 768 + 12 * 4 + 1, PrePassKit.VitBaseCount("vqt", "prompts=4"));

    [Fact]
    public void Logits_match_an_independent_transcription_and_the_tokens_are_untouched()
    {
        manual_seed(8);
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "vqt", TunerRegistry.ParseSettings(new[] { "prompts=3" }));
        var queries = model.blocks.Select(b => b.attn.KeyValueTuners.Items.OfType<VqtQueries>().Single().query_tokens).ToList();
        var weights = ((VqtPooling)model.fc_norm).vqt_combine;
        using (no_grad()) weights.uniform_(-1, 1);
        var (images, _) = TunerTestKit.Batch(size: 3);
        plain.eval();
        model.eval();
        using var noGrad = no_grad();

        // By hand: block by block, the queries attend (per head) to the block tokens' keys and values, then take the
        // block's residual/MLP path; each output token and the final class feature are L2-normalised over channels.
        Tensor Normalise(Tensor t) => t / t.norm(-1, keepdim: true);
        var x = plain.ForwardFeatures(images, out _, 0, 0, finalNorm: false);
        var features = new List<Tensor>();
        int h = plain.blocks[0].attn.NumHeads, d = 64, hd = d / h;
        for (int i = 0; i < plain.blocks.Count; i++)
        {
            var b = plain.blocks[i];
            var qkv = (Linear)b.attn.qkv;
            var wq = qkv.weight![..d]; var wk = qkv.weight[d..(2 * d)]; var wv = qkv.weight[(2 * d)..];
            var bq = qkv.bias![..d]; var bk = qkv.bias[d..(2 * d)]; var bv = qkv.bias[(2 * d)..];
            var xn = b.norm1.forward(x);
            var p = queries[i].unsqueeze(0).expand(3, -1, -1);
            var pn = b.norm1.forward(p);
            var q = pn.matmul(wq.t()) + bq;
            var k = xn.matmul(wk.t()) + bk;
            var v = xn.matmul(wv.t()) + bv;
            var headsOut = new List<Tensor>();
            for (int j = 0; j < h; j++)
            {
                var cols = arange(j * hd, (j + 1) * hd);
                var qh = q.index_select(2, cols); var kh = k.index_select(2, cols); var vh = v.index_select(2, cols);
                headsOut.Add((qh.matmul(kh.transpose(1, 2)) / Math.Sqrt(hd)).softmax(-1).matmul(vh));
            }
            var attended = b.attn.proj.forward(cat(headsOut.ToArray(), 2));
            var hq = p + attended;
            var outQ = hq + b.mlp.forward(b.norm2.forward(hq));
            features.Add(Normalise(outQ));
            x = b.forward(x);
        }
        var cls = plain.norm.forward(x)[.., 0];
        features.Add(Normalise(cls).unsqueeze(1));
        var stacked = cat(features.ToArray(), 1);
        var combined = (stacked * weights.reshape(1, -1, 1)).sum(1);
        var expected = plain.head.forward(combined);
        TensorAssert.Close(expected, model.forward(images), atol: 1e-5, rtol: 1e-4, what: "vqt logits");

        // The queries leave the block tokens exactly as the frozen model computes them.
        TensorAssert.Close(plain.ForwardFeatures(images, out _), model.ForwardFeatures(images, out _), atol: 1e-6, what: "tokens");
    }

    [Fact]
    public void Trains_loss_falls_clearly_over_thirty_steps()
    {
        var (before, after) = PrePassKit.LossOverSteps("vqt");
        Assert.True(after < before - 0.2, $"vqt: loss {before:F4} → {after:F4}");
    }

    [Fact]
    public void Refuses_merging_and_gradient_checkpointing_with_one_line()
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "vqt");
        Assert.Contains("cannot merge", Assert.Throws<PeftSharpException>(() => peft.Merge()).Message);
        model.GradCheckpointing = true;
        model.train();
        var (x, _) = TunerTestKit.Batch();
        var e = Assert.Throws<PeftSharpException>(() => model.forward(x));
        Assert.Contains("gradient checkpointing", e.Message);
    }

    [Fact]
    public void Zero_queries_is_one_line_naming_the_hyperparameter()
    {
        using var model = TunerTestKit.Backbone();
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(model, "vqt", TunerRegistry.ParseSettings(new[] { "prompts=0" })));
        Assert.Contains("'prompts' must be >= 1, got 0", e.Message);
    }
}
