using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Tests.Training;

public class TrainerTests
{
    static readonly Lazy<string> Task = new(() => TinyVtab.Create());

    static DataLoader Loader(string split, bool shuffle, int batch = 16) =>
        new(VtabTask.Open(Task.Value).Split(split), new DataLoaderOptions { ImageSize = 32, BatchSize = batch, Shuffle = shuffle, Seed = 3 });

    static (VisionTransformer Model, PeftModel Peft) Tuned(string method, double dropPath = 0, IReadOnlyDictionary<string, string>? settings = null)
    {
        manual_seed(17);
        var model = new BackboneSpec(null, null, TinyVtab.Backbone).Load(4, dropPath, out _);
        return (model, PeftModel.Create(model, method, settings));
    }

    static TrainOptions Options(int epochs = 3, double lr = 3e-3) => new() { Epochs = epochs, Lr = lr, WarmupEpochs = 1, BatchSize = 16, DropPath = 0 };

    [Fact]
    public void Cosine_schedule_follows_timm_per_epoch_semantics()
    {
        // timm's CosineLRScheduler(t_initial = 6, warmup_t = 2, warmup_lr_init = 0.01, lr_min = 0.002, warmup_prefix = False)
        // at base lr 0.1, by hand. Warm-up is linear from the warm-up lr, reaching the base lr only at epoch 2:
        //   epoch 0: 0.01;  epoch 1: 0.01 + 1 · (0.1 − 0.01) / 2 = 0.055.
        // Then lr_min + ½ (0.1 − lr_min)(1 + cos(π t / 6)), the cosine counted from epoch 0 (no warm-up prefix), so it
        // starts part-way down: ½ · 0.098 = 0.049 and
        //   epoch 2: cos(π/3) = ½        → 0.002 + 0.049 · 1.5 = 0.0755
        //   epoch 3: cos(π/2) = 0        → 0.002 + 0.049       = 0.051
        //   epoch 4: cos(2π/3) = −½      → 0.002 + 0.049 · 0.5 = 0.0265
        //   epoch 5: cos(5π/6) = −√3/2   → 0.002 + 0.049 · (1 − 0.8660254038) = 0.0085647552
        //   epoch 6 and after: lr_min = 0.002.
        var s = new CosineSchedule(BaseLr: 0.1, Epochs: 6, WarmupEpochs: 2, WarmupLr: 0.01, MinLr: 0.002);
        var expected = new[] { 0.01, 0.055, 0.0755, 0.051, 0.0265, 0.0085647552, 0.002, 0.002 };
        for (int epoch = 0; epoch < expected.Length; epoch++)
            Assert.True(Math.Abs(expected[epoch] - s.LearningRate(epoch)) < 1e-10, $"epoch {epoch}: {s.LearningRate(epoch)}, expected {expected[epoch]}");

        // The default schedule's numbers (1e-3 over 100 epochs, 10 warm-up from 1e-6, floor 1e-5):
        // epoch 5 = 1e-6 + 5 · 0.000999 / 10 = 0.0005005; epoch 10 = 1e-5 + 0.000495 · (1 + cos(π/10) = 1.9510565163)
        // = 0.00097577298; epoch 99 = 1e-5 + 0.000495 · (1 − 0.9995065604) = 1.02442526e-5.
        var d = new CosineSchedule(1e-3, 100, 10, 1e-6, 1e-5);
        Assert.Equal(1e-6, d.LearningRate(0), 15);
        Assert.Equal(0.0005005, d.LearningRate(5), 12);
        Assert.Equal(0.00097577298, d.LearningRate(10), 11);
        Assert.Equal(1.02442526e-5, d.LearningRate(99), 13);
        Assert.Equal(1e-5, d.LearningRate(100), 15);
    }

    [Fact]
    public void Training_lowers_the_loss_and_beats_chance_on_the_tiny_task()
    {
        var (model, peft) = Tuned("lora");
        using var train = Loader("train800", true);
        using var test = Loader("test", false);
        var result = new Trainer(peft, Options(epochs: 6, lr: 1e-2), CPU).Fit(train);
        Assert.True(result.EpochLosses[^1] < result.EpochLosses[0], string.Join(", ", result.EpochLosses));
        var eval = Evaluator.Evaluate(model, test, CPU);
        Assert.True(eval.Metrics.Top1 > 40, $"top-1 {eval.Metrics.Top1}% (chance 25%)");
        Assert.Equal(32, eval.Labels.Length);
    }

    [Fact]
    public void Training_is_deterministic_for_a_seed()
    {
        Dictionary<string, Tensor> Train()
        {
            var (_, peft) = Tuned("ssf", dropPath: 0.1);
            using var train = Loader("train800", true);
            new Trainer(peft, Options(epochs: 2) with { DropPath = 0.1 }, CPU).Fit(train);
            return peft.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
        }
        var a = Train();
        var b = Train();
        foreach (var (name, t) in a) TensorAssert.Identical(t, b[name], name);
    }

    [Fact]
    public void Divergence_stops_with_the_learning_rate_that_caused_it()
    {
        var (_, peft) = Tuned("full");
        using var train = Loader("train800", true);
        var e = Assert.Throws<PeftSharpException>(() => new Trainer(peft, Options(epochs: 3, lr: 1e12) with { WarmupEpochs = 0 }, CPU).Fit(train));
        Assert.Contains("diverged", e.Message);
        Assert.Contains("learning rate", e.Message);
    }

    [Fact]
    public void Linear_probe_on_cached_features_equals_training_through_the_backbone()
    {
        Dictionary<string, Tensor> Train(bool cache)
        {
            var (_, peft) = Tuned("linear");
            using var train = Loader("train800", true);
            var result = new Trainer(peft, Options(epochs: 3) with { CacheFrozenFeatures = cache }, CPU).Fit(train);
            Assert.Equal(cache, result.UsedFeatureCache);
            return peft.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
        }
        var cached = Train(cache: true);
        var full = Train(cache: false);
        foreach (var (name, t) in cached) TensorAssert.Close(full[name], t, atol: 1e-5, rtol: 1e-4, what: name);
    }

    [Theory]
    [InlineData("partial-k", 1)]
    [InlineData("linear", 2)]
    [InlineData("lora", 0)]
    [InlineData("vpt-shallow", 0)]
    [InlineData("fact-tt", 0)]
    public void Frozen_leading_blocks_run_without_autograd_and_give_the_same_gradients(string method, int expectedFirst)
    {
        var (model, peft) = Tuned(method, settings: method == "partial-k" ? new Dictionary<string, string> { ["k"] = "1" } : null);
        var trainer = new Trainer(peft, Options(), CPU);
        Assert.Equal(expectedFirst, trainer.FirstTrainableBlock);
        model.eval();
        manual_seed(1);
        var x = randn(4, 3, 32, 32);
        var y = tensor(new long[] { 0, 1, 2, 3 });
        var parameters = peft.TrainableParameters();
        nn.functional.cross_entropy(trainer.Logits(x), y).backward();
        var shortcut = parameters.ToDictionary(p => p.Name, p => p.Parameter.grad!.clone());
        foreach (var p in parameters) p.Parameter.grad = null;
        nn.functional.cross_entropy(model.forward(x), y).backward();
        foreach (var (name, p) in parameters) TensorAssert.Close(p.grad!, shortcut[name], atol: 1e-7, rtol: 1e-5, what: name);
    }

    [Fact]
    public void An_interrupted_run_resumes_from_its_checkpoint_to_the_same_result()
    {
        Dictionary<string, Tensor> Params(PeftModel p) => p.TrainableParameters().ToDictionary(x => x.Name, x => x.Parameter.detach().clone());
        var (_, straight) = Tuned("lora", dropPath: 0.1);
        using (var train = Loader("train800", true)) new Trainer(straight, Options(epochs: 4) with { DropPath = 0.1 }, CPU).Fit(train);
        var expected = Params(straight);

        var checkpoint = new TrainCheckpoint(TestFiles.TempDir());
        var (_, first) = Tuned("lora", dropPath: 0.1);
        using (var train = Loader("train800", true))
        {
            var cancel = new CancellationTokenSource();
            var progress = new CancelAfterEpochs(cancel, epochs: 2);
            Assert.ThrowsAny<OperationCanceledException>(() => new Trainer(first, Options(epochs: 4) with { DropPath = 0.1 }, CPU).Fit(train, progress, checkpoint, cancel.Token));
        }
        var (_, resumed) = Tuned("lora", dropPath: 0.1);
        using (var train = Loader("train800", true))
        {
            var result = new Trainer(resumed, Options(epochs: 4) with { DropPath = 0.1 }, CPU).Fit(train, null, checkpoint);
            Assert.Equal(4, result.EpochLosses.Count);
        }
        foreach (var (name, t) in expected) TensorAssert.Identical(t, Params(resumed)[name], name);
    }

    /// <summary>Cancels training once the given number of epochs completed (the first step of the next epoch).</summary>
    sealed class CancelAfterEpochs(CancellationTokenSource cancel, int epochs) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value)
        {
            if (value.Epoch == epochs && value.Step == value.StepsPerEpoch) cancel.Cancel();
        }
    }

    [Fact]
    public void Metrics_are_computed_from_logits()
    {
        // 4 examples, 3 classes: predictions 0, 1, 1, 2 for labels 0, 1, 2, 2.
        var logits = tensor(new float[,] { { 3, 0, 0 }, { 0, 2, 0 }, { 0, 1, 0.5f }, { 0, 0, 4 } });
        var labels = tensor(new long[] { 0, 1, 2, 2 });
        var m = Metrics.Compute(logits, labels);
        Assert.Equal(75, m.Top1, 10);
        Assert.Equal(new[] { 100.0, 100.0, 50.0 }, m.PerClassAccuracy);
        Assert.Equal(1, m.Confusion[2, 1]);
        Assert.Equal(1, m.Confusion[2, 2]);
        var conf = nn.functional.softmax(logits, 1).max(1).values.data<float>().ToArray();
        // Confidences fall in distinct bins here, so ECE = mean |correct − confidence|.
        double expected = (Math.Abs(1 - conf[0]) + Math.Abs(1 - conf[1]) + Math.Abs(0 - conf[2]) + Math.Abs(1 - conf[3])) / 4;
        Assert.Equal(expected, m.ExpectedCalibrationError, 5);
    }
}
