using PeftSharp.Interop;
using PeftSharp.Data;
using PeftSharp.Evaluation;
using PeftSharp.Training;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Training;

public class PrecisionTests
{
    [Fact]
    public void Autocast_runs_products_in_bfloat16_inside_its_scope_only()
    {
        using var x = randn(4, 8);
        using var w = randn(3, 8, requires_grad: true);
        using (Autocast.Enter(Precision.BFloat16, CPU))
        {
            using var inside = F.linear(x, w);
            Assert.Equal(ScalarType.BFloat16, inside.dtype);
            using (Autocast.Enter(Precision.BFloat16, CPU)) { }
            using var afterNested = F.linear(x, w);
            Assert.Equal(ScalarType.BFloat16, afterNested.dtype);   // leaving a nested scope keeps the outer one
        }
        using var outside = F.linear(x, w);
        Assert.Equal(ScalarType.Float32, outside.dtype);
        using (Autocast.Enter(Precision.Float32, CPU))
        using (var plain = F.linear(x, w)) Assert.Equal(ScalarType.Float32, plain.dtype);
    }

    [Fact]
    public void Bfloat16_training_learns_like_float32_and_keeps_float32_parameters()
    {
        double Train(Precision precision, out double top1)
        {
            manual_seed(17);
            var model = new BackboneSpec(null, null, TinyVtab.Backbone).Load(4, 0, out _);
            var peft = PeftModel.Create(model, "lora");
            var data = VtabTask.Open(TinyVtab.Create());
            using var train = new DataLoader(data.Split("train800"), new DataLoaderOptions { ImageSize = 32, BatchSize = 16, Shuffle = true, Seed = 3 });
            using var test = new DataLoader(data.Split("test"), new DataLoaderOptions { ImageSize = 32, BatchSize = 16 });
            var options = new TrainOptions { Epochs = 6, Lr = 1e-2, WarmupEpochs = 1, BatchSize = 16, DropPath = 0, Precision = precision };
            var result = new Trainer(peft, options, CPU).Fit(train);
            Assert.True(result.EpochLosses[^1] < result.EpochLosses[0], string.Join(", ", result.EpochLosses));
            Assert.All(peft.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
            top1 = Evaluator.Evaluate(model, test, CPU, precision: precision).Metrics.Top1;
            return result.EpochLosses[^1];
        }
        double lossFp32 = Train(Precision.Float32, out double top1Fp32);
        double lossBf16 = Train(Precision.BFloat16, out double top1Bf16);
        Assert.True(top1Bf16 > 40, $"bf16 top-1 {top1Bf16}% (chance 25%)");
        Assert.True(Math.Abs(lossBf16 - lossFp32) < 0.25 * lossFp32 + 0.05, $"final loss bf16 {lossBf16:F4} vs fp32 {lossFp32:F4}");
        Assert.True(Math.Abs(top1Bf16 - top1Fp32) <= 25, $"top-1 bf16 {top1Bf16}% vs fp32 {top1Fp32}%");
    }

    [Fact]
    public void Precision_names_parse_and_bad_ones_say_what_is_expected()
    {
        Assert.Equal(Precision.BFloat16, Autocast.ParsePrecision("bf16"));
        Assert.Equal(Precision.Float32, Autocast.ParsePrecision(null));
        var e = Assert.Throws<PeftSharpException>(() => Autocast.ParsePrecision("fp8"));
        Assert.Contains("expected fp32 or bf16", e.Message);
    }

    [Fact]
    public void Only_a_non_default_precision_enters_the_run_key()
    {
        var plain = RunSpecs.TrainingJson(new TrainOptions());
        Assert.DoesNotContain("precision", plain);
        Assert.Contains("\"precision\":\"bf16\"", RunSpecs.TrainingJson(new TrainOptions { Precision = Precision.BFloat16 }));
    }
}
