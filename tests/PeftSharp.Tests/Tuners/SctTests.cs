using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>SCT (Zhao et al.; showlab/SCT sct_attn): the block edit, the channel-saliency pre-pass, the count, training,
/// and the selection travelling with adapter files.</summary>
public class SctTests
{
    [Fact]
    public void Parameter_count_on_vit_b16_at_top_96_is_111744() =>
        Assert.Equal(111_744L, PrePassKit.VitBaseCount("sct", "channels=96"));

    [Fact]
    public void Parameter_count_follows_12_times_n_squared_plus_n() =>
        Assert.Equal(12L * (32 * 32 + 32), PrePassKit.VitBaseCount("sct", "channels=32"));

    [Fact]
    public void Block_output_is_the_authors_formula_on_the_salient_channels()
    {
        manual_seed(5);
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        PeftModel.Create(model, "sct", TunerRegistry.ParseSettings(new[] { "channels=6" }));
        var adapter = (SctChannelAdapter)model.blocks[0].Tuners.Items.Single();
        var channels = tensor(new long[] { 1, 7, 20, 33, 50, 63 });
        using (no_grad())
        {
            adapter.Channels.copy_(channels);
            adapter.adapt_linear.bias!.normal_(0, 0.1);
        }
        var x = randn(2, 5, 64);
        model.eval();
        plain.eval();
        Tensor actual, expected;
        using (no_grad())
        {
            actual = model.blocks[0].forward(x);
            // By hand: h = x + attn(norm1 x); h[:, S] += h[:, S] Wᵀ + b; out = h + mlp(norm2 h).
            var b = plain.blocks[0];
            var h = x + b.attn.forward(b.norm1.forward(x));
            var hs = h.index_select(2, channels);
            var edited = h.clone();
            var w = adapter.adapt_linear.weight!;
            var bias = adapter.adapt_linear.bias!;
            for (int j = 0; j < 6; j++)
            {
                long c = channels[j].item<long>();
                edited[.., .., c] = hs[.., .., j] + hs.matmul(w[j]) + bias[j];
            }
            expected = edited + b.mlp.forward(b.norm2.forward(edited));
        }
        TensorAssert.Close(expected, actual, atol: 1e-5, rtol: 1e-5, what: "sct block");
    }

    [Fact]
    public void Pre_pass_keeps_the_channels_of_highest_class_averaged_l2_norm_on_the_training_split()
    {
        using var train = PrePassKit.Loader(shuffle: true);
        using var model = PrePassKit.Backbone();
        var peft = PeftModel.Create(model, "sct", TunerRegistry.ParseSettings(new[] { "channels=10" }));
        Assert.True(peft.NeedsPrePass);
        peft.RunPrePasses(new PrePassData(train, CPU, 3));
        Assert.False(peft.NeedsPrePass);

        // Independently: the norm2 input of every block (x + attn(norm1 x)) on the un-augmented training images of a
        // fresh copy of the backbone, class token dropped; per class the L2 norm over images and tokens; the mean over
        // classes; the ten largest.
        using var reference = PrePassKit.Backbone();
        reference.eval();
        var inputs = new List<Tensor>();
        var labels = new List<long>();
        foreach (var batch in train.Unaugmented())
        {
            using (batch)
            {
                inputs.Add(batch.Images.clone());
                labels.AddRange(batch.Labels.data<long>().ToArray());
            }
        }
        using var _ = no_grad();
        var images = cat(inputs.ToArray(), 0);
        var x = reference.ForwardFeatures(images, out var layout, 0, 0, finalNorm: false);
        for (int i = 0; i < reference.blocks.Count; i++)
        {
            var block = reference.blocks[i];
            var h = x + block.attn.forward(block.norm1.forward(x));
            var patches = h[.., 1..].to(float64);
            var classNorms = labels.Distinct().OrderBy(c => c).Select(c =>
            {
                var rows = tensor(labels.Select((l, k) => (l, k)).Where(p => p.l == c).Select(p => (long)p.k).ToArray());
                return patches.index_select(0, rows).pow(2).sum(new long[] { 0, 1 }).sqrt();
            }).ToArray();
            var saliency = stack(classNorms).mean(new long[] { 0 });
            var top = saliency.argsort(descending: true)[..10].sort().Values;
            var chosen = ((SctChannelAdapter)model.blocks[i].Tuners.Items.Single()).Channels;
            Assert.Equal(top.data<long>().ToArray(), chosen.data<long>().ToArray());
            x = block.forward(x);
        }
    }

    [Fact]
    public void Trains_loss_falls_clearly_over_thirty_steps()
    {
        var (before, after) = PrePassKit.LossOverSteps("sct", sets: "channels=16");
        Assert.True(after < before - 0.2, $"sct: loss {before:F4} → {after:F4}");
    }

    [Fact]
    public void Trainer_runs_the_pre_pass_once_reports_its_time_and_adapter_files_keep_the_selection()
    {
        using var train = PrePassKit.Loader();
        using var model = PrePassKit.Backbone();
        var peft = PeftModel.Create(model, "sct", TunerRegistry.ParseSettings(new[] { "channels=8" }));
        var result = new Trainer(peft, PrePassKit.Options(epochs: 2), CPU).Fit(train);
        Assert.True(result.PrePassSeconds > 0);
        Assert.True(result.Seconds >= result.PrePassSeconds);
        Assert.False(peft.NeedsPrePass);
        var chosen = ((SctChannelAdapter)model.blocks[1].Tuners.Items.Single()).Channels.clone();
        Assert.NotEqual(arange(8L).data<long>().ToArray(), chosen.data<long>().ToArray());

        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, dir);
        using var fresh = PrePassKit.Backbone();
        var loaded = AdapterFiles.Load(fresh, dir);
        Assert.False(loaded.NeedsPrePass);
        TensorAssert.Identical(chosen, ((SctChannelAdapter)fresh.blocks[1].Tuners.Items.Single()).Channels, "selection reloaded");
        var (x, _) = TunerTestKit.Batch();
        TensorAssert.Identical(TunerTestKit.EvalLogits(model, x), TunerTestKit.EvalLogits(fresh, x), "sct reloaded");
    }

    [Fact]
    public void A_resumed_run_restores_the_selection_from_its_epoch_checkpoint_instead_of_redoing_the_pre_pass()
    {
        using var train = PrePassKit.Loader();
        var checkpoint = new TrainCheckpoint(TestFiles.TempDir());
        using var first = PrePassKit.Backbone();
        var peft = PeftModel.Create(first, "sct", TunerRegistry.ParseSettings(new[] { "channels=8" }));
        var one = new Trainer(peft, PrePassKit.Options(epochs: 1), CPU).Fit(train, checkpoint: checkpoint);
        var chosen = ((SctChannelAdapter)first.blocks[0].Tuners.Items.Single()).Channels.clone();

        // A fresh process would rebuild the model with the default selection; the checkpoint brings the chosen one back
        // and the pass is not run again (its recorded time is carried over, nothing added).
        using var second = PrePassKit.Backbone();
        var resumed = PeftModel.Create(second, "sct", TunerRegistry.ParseSettings(new[] { "channels=8" }));
        Assert.True(resumed.NeedsPrePass);
        var two = new Trainer(resumed, PrePassKit.Options(epochs: 2), CPU).Fit(train, checkpoint: checkpoint);
        Assert.False(resumed.NeedsPrePass);
        Assert.Equal(one.PrePassSeconds, two.PrePassSeconds);
        TensorAssert.Identical(chosen, ((SctChannelAdapter)second.blocks[0].Tuners.Items.Single()).Channels, "restored selection");
        Assert.Equal(2, two.EpochLosses.Count);
    }

    [Theory]
    [InlineData("channels=65", "'channels' = 65 exceeds the width 64")]
    [InlineData("channels=0", "'channels' must be >= 1, got 0")]
    public void Bad_channel_counts_get_one_line_naming_the_hyperparameter(string set, string expected)
    {
        using var model = TunerTestKit.Backbone();
        var e = Assert.Throws<PeftSharpException>(() => PeftModel.Create(model, "sct", TunerRegistry.ParseSettings(new[] { set })));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
