using PeftSharp.Interop;
using PeftSharp.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Evaluation;

/// <summary>The outcome of one evaluation: metrics plus every example's logits (kept for ensembles and overlap).</summary>
public sealed record EvaluationResult(Metrics Metrics, float[,] Logits, long[] Labels, int[] Indices, double Seconds)
{
    public double ImagesPerSecond => Labels.Length / Math.Max(Seconds, 1e-9);
    public int Predicted(int i)
    {
        int best = 0;
        for (int c = 1; c < Logits.GetLength(1); c++) if (Logits[i, c] > Logits[i, best]) best = c;
        return best;
    }
}

/// <summary>Runs a classifier over a loader in inference mode.</summary>
public static class Evaluator
{
    public static EvaluationResult Evaluate(nn.Module<Tensor, Tensor> model, DataLoader loader, Device device, IProgress<int>? progress = null,
                                            Precision precision = Precision.Float32)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        bool wasTraining = model.training;
        model.eval();
        var logits = new List<Tensor>();
        var labels = new List<Tensor>();
        var indices = new List<int>();
        try
        {
            using var _ = inference_mode();
            using var products = Autocast.Enter(precision, device);
            using var weights = CastOnce.Inference(model, precision);
            int done = 0;
            foreach (var batch in loader.Epoch(0))
            {
                using (batch)
                using (NativeHeap.StepScope(device.type))
                {
                    var output = model.forward(batch.Images.to(device)).to(float32).cpu();
                    logits.Add(output.MoveToOuterDisposeScope());
                    labels.Add(batch.Labels.clone().MoveToOuterDisposeScope());
                    indices.AddRange(batch.Indices);
                }
                done += batch.Size;
                progress?.Report(done);
            }
            using var allLogits = cat(logits.ToArray(), 0);
            using var allLabels = cat(labels.ToArray(), 0);
            var metrics = Metrics.Compute(allLogits, allLabels);
            return new EvaluationResult(metrics, ToMatrix(allLogits), allLabels.data<long>().ToArray(), indices.ToArray(), watch.Elapsed.TotalSeconds);
        }
        finally
        {
            foreach (var t in logits.Concat(labels)) t.Dispose();
            if (wasTraining) model.train();
        }
    }

    static float[,] ToMatrix(Tensor logits)
    {
        int n = (int)logits.shape[0], c = (int)logits.shape[1];
        var flat = logits.contiguous().data<float>().ToArray();
        var matrix = new float[n, c];
        Buffer.BlockCopy(flat, 0, matrix, 0, flat.Length * sizeof(float));
        return matrix;
    }
}
