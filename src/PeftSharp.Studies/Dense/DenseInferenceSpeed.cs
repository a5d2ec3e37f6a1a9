using System.Diagnostics;
using PeftSharp.Interop;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Dense;

/// <summary>Inference speed of one model variant: images per second (the median of its timed rounds).</summary>
public sealed record DenseSpeed(string Variant, double ImagesPerSecond, IReadOnlyList<double> Rounds);

/// <summary>
/// Whether a merged method costs anything at inference: the same dense model (backbone + head) with the plain
/// backbone, with LoRA applied and unmerged, and with LoRA merged and unloaded (timm's modules and keys only) predicts
/// the same batches; the variants take turns round by round, so a machine shared with other work slows them alike.
/// The trained values do not matter for the time, so LoRA's B matrices are set non-zero to make the merge real.
/// </summary>
public static class DenseInferenceSpeed
{
    public static IReadOnlyList<DenseSpeed> Measure(string checkpoint, DenseKind kind, int classes, string segHead, int imageSize, Device device,
                                                    int batchSize = 32, int rounds = 7, int batchesPerRound = 4)
    {
        manual_seed(0);
        var images = rand(batchSize, 3, imageSize, imageSize).to(device);
        var variants = new List<(string Name, DenseModel Model)>();
        try
        {
            foreach (var name in new[] { "plain backbone", "LoRA unmerged", "LoRA merged" })
            {
                manual_seed(1);   // the same head in every variant
                var backbone = DenseAdapter.LoadBackbone(null, null, checkpoint, imageSize, 0);
                var model = new DenseModel(backbone, kind, classes, segHead);
                if (name != "plain backbone")
                {
                    var peft = PeftModel.Create(backbone, "lora", null);
                    using (no_grad())
                        foreach (var t in peft.TrainableParameters().Where(t => t.Name.Contains("lora_B", StringComparison.Ordinal)))
                            t.Parameter.normal_(0, 0.02);
                    if (name == "LoRA merged") peft.MergeAndUnload();
                }
                model.to(device);
                model.eval();
                variants.Add((name, model));
            }
            var times = variants.ToDictionary(v => v.Name, _ => new List<double>());
            using var inference = inference_mode();
            foreach (var (_, model) in variants) Run(model, images);   // warm-up
            for (int r = 0; r < rounds; r++)
                foreach (var (name, model) in variants)
                {
                    var watch = Stopwatch.StartNew();
                    for (int b = 0; b < batchesPerRound; b++) Run(model, images);
                    times[name].Add(batchSize * batchesPerRound / watch.Elapsed.TotalSeconds);
                }
            return variants.Select(v => new DenseSpeed(v.Name, Median(times[v.Name]), times[v.Name])).ToList();
        }
        finally
        {
            foreach (var (_, model) in variants) model.Dispose();
        }
    }

    static void Run(DenseModel model, Tensor images)
    {
        using var scope = NativeHeap.StepScope();
        if (model.Kind == DenseKind.Segmentation) model.SegmentationLogits(images).argmax(1).cpu();
        else model.DetectionOutputs(images).ClassLogits.cpu();
    }

    static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
