using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace PeftSharp.Evaluation;

/// <summary>Classification metrics of one evaluation, computed from the per-example logits.</summary>
public sealed class Metrics
{
    public const int CalibrationBins = 15;

    Metrics(double top1, double[] perClass, long[,] confusion, double ece, double loss, int count)
    {
        Top1 = top1;
        PerClassAccuracy = perClass;
        Confusion = confusion;
        ExpectedCalibrationError = ece;
        Loss = loss;
        Count = count;
    }

    /// <summary>Top-1 accuracy in percent.</summary>
    public double Top1 { get; }
    /// <summary>Accuracy per true class in percent (NaN for classes with no example).</summary>
    public double[] PerClassAccuracy { get; }
    /// <summary>[true class, predicted class] counts.</summary>
    public long[,] Confusion { get; }
    /// <summary>ECE over 15 equal-width confidence bins, as a fraction.</summary>
    public double ExpectedCalibrationError { get; }
    public double Loss { get; }
    public int Count { get; }

    /// <param name="logits">[N, C] on any device.</param>
    /// <param name="labels">[N] int64.</param>
    public static Metrics Compute(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var l = logits.detach().to(float32).cpu();
        var y = labels.cpu().to(int64);
        int n = (int)l.shape[0], classes = (int)l.shape[1];
        if (n == 0) throw new PeftSharpException("evaluation: no examples to evaluate");
        var probabilities = nn.functional.softmax(l, 1);
        var confidence = probabilities.max(1);
        long[] predicted = confidence.indexes.data<long>().ToArray();
        float[] conf = confidence.values.data<float>().ToArray();
        long[] truth = y.data<long>().ToArray();
        double loss = nn.functional.cross_entropy(l, y).item<float>();

        var confusion = new long[classes, classes];
        var binCount = new int[CalibrationBins];
        var binCorrect = new double[CalibrationBins];
        var binConfidence = new double[CalibrationBins];
        int correct = 0;
        for (int i = 0; i < n; i++)
        {
            bool hit = predicted[i] == truth[i];
            correct += hit ? 1 : 0;
            confusion[truth[i], predicted[i]]++;
            int bin = Math.Min(CalibrationBins - 1, (int)(conf[i] * CalibrationBins));
            binCount[bin]++;
            binCorrect[bin] += hit ? 1 : 0;
            binConfidence[bin] += conf[i];
        }
        double ece = 0;
        for (int b = 0; b < CalibrationBins; b++)
            if (binCount[b] > 0) ece += Math.Abs(binCorrect[b] - binConfidence[b]) / n;
        var perClass = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            long total = 0;
            for (int p = 0; p < classes; p++) total += confusion[c, p];
            perClass[c] = total == 0 ? double.NaN : 100.0 * confusion[c, c] / total;
        }
        return new Metrics(100.0 * correct / n, perClass, confusion, ece, loss, n);
    }

    public JsonObject ToJson()
    {
        int classes = PerClassAccuracy.Length;
        var confusion = new JsonArray();
        for (int t = 0; t < classes; t++)
            confusion.Add(new JsonArray(Enumerable.Range(0, classes).Select(p => (JsonNode)JsonValue.Create(Confusion[t, p])!).ToArray()));
        return new JsonObject
        {
            ["top1"] = Top1, ["loss"] = Loss, ["ece"] = ExpectedCalibrationError, ["count"] = Count,
            ["per_class_accuracy"] = new JsonArray(PerClassAccuracy.Select(a => (JsonNode?)(double.IsNaN(a) ? null : JsonValue.Create(a))).ToArray()),
            ["confusion"] = confusion,
        };
    }
}
