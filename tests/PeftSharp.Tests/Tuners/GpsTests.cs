using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>GPS (Zhang et al., CVPR 2024): the count, the contrastive gradient selection, sparse training (an
/// unselected weight never moves), the sparse adapter files and the in-place merge.</summary>
public class GpsTests
{
    const long Rows = 12 * (3 * 768 + 768 + 4 * 768 + 768) + 768;   // 83,712: every weight row, patch embedding included

    [Fact]
    public void Parameter_count_on_vit_b16_at_k_1_is_167424() => Assert.Equal(167_424L, PrePassKit.VitBaseCount("gps", "k=1"));

    [Fact]
    public void Parameter_count_is_k_times_rows_plus_the_biases() => Assert.Equal(3 * Rows + Rows, PrePassKit.VitBaseCount("gps", "k=3"));

    [Fact]
    public void Supervised_contrastive_loss_matches_an_independent_transcription()
    {
        manual_seed(3);
        var a = randn(4, 6);
        var b = randn(4, 6);
        var labels = tensor(new long[] { 0, 1, 0, 2 });
        // By hand, anchor by anchor: −mean over positives p of log(exp(z·z_p/τ) / Σ_{j≠i} exp(z·z_j/τ)).
        var z = cat(new[] { a, b }, 0);
        z = z / z.norm(1, keepdim: true);
        var all = cat(new[] { labels, labels }, 0);
        double total = 0;
        for (int i = 0; i < 8; i++)
        {
            var sims = z.matmul(z[i]) / 0.07;
            double denominator = 0;
            for (int j = 0; j < 8; j++) if (j != i) denominator += Math.Exp(sims[j].item<float>());
            double sum = 0;
            int count = 0;
            for (int p = 0; p < 8; p++)
                if (p != i && all[p].item<long>() == all[i].item<long>())
                {
                    sum += sims[p].item<float>() - Math.Log(denominator);
                    count++;
                }
            total += -sum / count;
        }
        Assert.Equal(total / 8, Gps.SupervisedContrastiveLoss(a, b, labels).item<float>(), 4);
    }

    [Fact]
    public void Forward_is_the_base_layer_with_the_selected_entries_added()
    {
        manual_seed(4);
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "gps", TunerRegistry.ParseSettings(new[] { "k=2" }));
        var wrapper = (SparseDeltaLinear)model.blocks[0].mlp.fc1;
        var conv = (SparseDeltaConv)model.patch_embed.proj;
        using (no_grad())
        {
            wrapper.Index.copy_(randint(0, 64, new long[] { 256, 2 }));
            wrapper.gps_delta.normal_();
            conv.gps_delta.normal_();
        }
        var x = randn(3, 5, 64);
        var images = randn(2, 3, 32, 32);
        using var _ = no_grad();
        // By hand: W'[r, idx[r, j]] += δ[r, j] (entry by entry), then the ordinary layer.
        var w = ((Linear)plain.blocks[0].mlp.fc1).weight!.clone();
        var idx = wrapper.Index.data<long>().ToArray();
        var delta = wrapper.gps_delta.data<float>().ToArray();
        for (int r = 0; r < 256; r++)
            for (int j = 0; j < 2; j++)
                w[r, idx[r * 2 + j]] += delta[r * 2 + j];
        TensorAssert.Close(F.linear(x, w, ((Linear)plain.blocks[0].mlp.fc1).bias), wrapper.forward(x), atol: 1e-5, what: "gps fc1");
        var cw = ((Conv2d)plain.patch_embed.proj).weight!.clone().reshape(64, 192);
        var cidx = conv.Index.data<long>().ToArray();
        var cdelta = conv.gps_delta.data<float>().ToArray();
        for (int r = 0; r < 64; r++)
            for (int j = 0; j < 2; j++)
                cw[r, cidx[r * 2 + j]] += cdelta[r * 2 + j];
        var expected = F.conv2d(images, cw.reshape(64, 3, 8, 8), ((Conv2d)plain.patch_embed.proj).bias, strides: new long[] { 8, 8 });
        TensorAssert.Close(expected, conv.forward(images), atol: 1e-5, what: "gps patch embedding");
    }

    [Fact]
    public void Pre_pass_selects_each_rows_top_k_of_the_accumulated_contrastive_gradient()
    {
        const int seed = 9, k = 2;
        using var train = PrePassKit.Loader();
        using var model = PrePassKit.Backbone();
        var peft = PeftModel.Create(model, "gps", TunerRegistry.ParseSettings(new[] { $"k={k}" }));
        peft.RunPrePasses(new PrePassData(train, CPU, seed));
        Assert.False(peft.NeedsPrePass);
        Assert.All(peft.TrainableParameters(), p => Assert.True(p.Parameter.requires_grad));
        Assert.All(model.parameters(), p => Assert.Null(p.grad));

        // Independently: a plain copy of the backbone, all weights differentiable, the same two views per batch (the
        // run's seed), the contrastive loss as Khosla et al. write it, gradients summed over the split.
        using var reference = PrePassKit.Backbone();
        reference.train();
        var rng = new Random(seed);
        foreach (var batch in train.Unaugmented())
        {
            using (batch)
            {
                var v1 = Augmentation.ManyShot.Apply(batch.Images, rng);
                var v2 = Augmentation.ManyShot.Apply(batch.Images, rng);
                var tokens = reference.ForwardFeatures(cat(new[] { v1, v2 }, 0), out var layout);
                var f = reference.ForwardHead(tokens, layout, preLogits: true);
                var z = f / f.norm(1, keepdim: true);
                var labels = cat(new[] { batch.Labels, batch.Labels }, 0);
                long n = z.shape[0];
                var self = eye(n).to(@bool);
                var sims = (z.matmul(z.t()) / 0.07).masked_fill(self, double.NegativeInfinity);
                var logProb = sims.log_softmax(1).masked_fill(self, 0);
                var positive = labels.unsqueeze(1).eq(labels.unsqueeze(0)).logical_and(self.logical_not()).to(float32);
                (-(positive * logProb).sum(1) / positive.sum(1)).mean().backward();
            }
        }
        var pairs = new (SparseDelta Wrapper, Tensor Weight)[]
        {
            ((SparseDelta)model.blocks[0].attn.qkv, ((Linear)reference.blocks[0].attn.qkv).weight!),
            ((SparseDelta)model.blocks[1].attn.proj, ((Linear)reference.blocks[1].attn.proj).weight!),
            ((SparseDelta)model.blocks[0].mlp.fc1, ((Linear)reference.blocks[0].mlp.fc1).weight!),
            ((SparseDelta)model.blocks[1].mlp.fc2, ((Linear)reference.blocks[1].mlp.fc2).weight!),
            ((SparseDelta)model.patch_embed.proj, ((Conv2d)reference.patch_embed.proj).weight!),
        };
        foreach (var (wrapper, weight) in pairs)
        {
            var scores = weight.grad!.abs().flatten(1);
            // Each selected entry scores at least the row's k-th largest (up to float noise between the two runs).
            var kth = scores.topk(k, dim: 1).values[.., (k - 1)..k];
            var chosen = scores.gather(1, wrapper.Index);
            Assert.True(chosen.ge(kth * (1 - 1e-4) - 1e-12).all().item<bool>(), $"{wrapper.GetName()}: a selected entry is not among its row's top {k}");
            Assert.True(wrapper.Index[.., 1..].gt(wrapper.Index[.., ..1]).all().item<bool>(), "distinct, ascending columns");
        }
    }

    [Fact]
    public void Trains_loss_falls_clearly_over_thirty_steps()
    {
        var (before, after) = PrePassKit.LossOverSteps("gps");
        Assert.True(after < before - 0.2, $"gps: loss {before:F4} → {after:F4}");
    }

    [Fact]
    public void An_unselected_weight_never_moves_adapter_files_hold_only_the_selected_entries_and_merge_edits_only_them()
    {
        using var train = PrePassKit.Loader();
        using var model = PrePassKit.Backbone();
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var peft = PeftModel.Create(model, "gps", TunerRegistry.ParseSettings(new[] { "k=2" }));
        var result = new Trainer(peft, PrePassKit.Options(epochs: 3, lr: 1e-2), CPU).Fit(train);
        Assert.True(result.PrePassSeconds > 0);
        Assert.True(peft.TrainableParameters().Where(p => p.Name.EndsWith("gps_delta")).Any(p => p.Parameter.abs().sum().item<float>() > 0));

        // The frozen weights are bit-identical; the effective weight differs from them only at the selected entries.
        var fc1 = (SparseDeltaLinear)model.blocks[0].mlp.fc1;
        TensorAssert.Identical(original["blocks.0.mlp.fc1.weight"], fc1.BaseWeight, "frozen fc1 weight");
        var (x, _) = TunerTestKit.Batch();
        var before = TunerTestKit.EvalLogits(model, x);
        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, dir);
        using (var file = SafeTensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFile)))
        {
            Assert.Equal(new long[] { 256, 2 }, file.Info("blocks.0.mlp.fc1.gps_delta").Shape);
            Assert.Equal(new long[] { 256, 2 }, file.Info("blocks.0.mlp.fc1.gps_index").Shape);
            Assert.DoesNotContain(file.Tensors, t => t.Name.EndsWith(".weight") && !t.Name.StartsWith("head."));
        }

        peft.Merge();
        var merged = ((Linear)fc1.Innermost).weight!;
        var selected = zeros(256, 64, dtype: @bool).scatter(1, fc1.Index, ones(256, 2, dtype: @bool));
        var changed = merged.ne(original["blocks.0.mlp.fc1.weight"]);
        Assert.False(changed.logical_and(selected.logical_not()).any().item<bool>(), "an unselected entry moved");
        Assert.True(changed.any().item<bool>());
        TensorAssert.Close(before, TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-5, what: "merged");
        peft.Unmerge();

        using var fresh = PrePassKit.Backbone();
        var loaded = AdapterFiles.Load(fresh, dir);
        Assert.False(loaded.NeedsPrePass);
        TensorAssert.Identical(before, TunerTestKit.EvalLogits(fresh, x), "gps reloaded");
    }

    [Theory]
    [InlineData("k=0", "'k' must be >= 1, got 0")]
    [InlineData("k=65", "'k' = 65 exceeds the 64 inputs of blocks.0.attn.qkv")]
    public void Bad_k_gets_one_line_naming_the_hyperparameter(string set, string expected)
    {
        using var model = TunerTestKit.Backbone();
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(model, "gps", TunerRegistry.ParseSettings(new[] { set })));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
