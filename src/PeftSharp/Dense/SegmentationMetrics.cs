using System.Text.Json.Nodes;

namespace PeftSharp.Dense;

/// <summary>
/// mmsegmentation's IoUMetric: per image, pixels whose label is the ignore index (255) are dropped, then the areas of
/// intersection, prediction, label and union are summed per class over the whole split (intersect_and_union); at the
/// end IoU = intersection / union and Acc = intersection / label per class, mIoU and mAcc are their means over the
/// classes that are defined (nanmean: a class absent from both labels and predictions has no IoU), and aAcc is all
/// intersections over all labelled pixels. Values are fractions (mmsegmentation prints them ×100).
/// </summary>
public sealed class SegmentationMetrics
{
    readonly long[] intersect, predicted, labelled;

    public SegmentationMetrics(int numClasses, byte ignoreIndex = SegmentationFolder.Ignore)
    {
        NumClasses = numClasses;
        IgnoreIndex = ignoreIndex;
        intersect = new long[numClasses];
        predicted = new long[numClasses];
        labelled = new long[numClasses];
    }

    public int NumClasses { get; }
    public byte IgnoreIndex { get; }

    /// <summary>Adds one image: predicted and true class per pixel (same length). Labels ≥ the classes (other than the
    /// ignore index) fall outside mmsegmentation's histogram range and count nowhere, as there.</summary>
    public void Add(ReadOnlySpan<byte> prediction, ReadOnlySpan<byte> label)
    {
        if (prediction.Length != label.Length) throw new ArgumentException("prediction and label differ in size");
        for (int p = 0; p < label.Length; p++)
        {
            int l = label[p], q = prediction[p];
            if (l == IgnoreIndex) continue;
            if (q < NumClasses) predicted[q]++;
            if (l < NumClasses) labelled[l]++;
            if (q == l && l < NumClasses) intersect[l]++;
        }
    }

    /// <summary>Per class IoU (NaN where the union is empty).</summary>
    public double[] ClassIoU() => Enumerable.Range(0, NumClasses).Select(c =>
    {
        long union = predicted[c] + labelled[c] - intersect[c];
        return union == 0 ? double.NaN : (double)intersect[c] / union;
    }).ToArray();

    /// <summary>Per class accuracy (NaN where the class has no labelled pixel).</summary>
    public double[] ClassAcc() => Enumerable.Range(0, NumClasses).Select(c => labelled[c] == 0 ? double.NaN : (double)intersect[c] / labelled[c]).ToArray();

    public double MeanIoU => NanMean(ClassIoU());
    public double MeanAcc => NanMean(ClassAcc());
    public double AllAcc => labelled.Sum() == 0 ? double.NaN : (double)intersect.Sum() / labelled.Sum();

    static double NanMean(double[] values)
    {
        var defined = values.Where(v => !double.IsNaN(v)).ToList();
        return defined.Count == 0 ? double.NaN : defined.Average();
    }

    /// <summary>The metrics as the results database stores them: "metric": "miou", then every figure.</summary>
    public JsonObject ToJson(IReadOnlyList<string> classNames)
    {
        var perClass = new JsonObject();
        var iou = ClassIoU();
        for (int c = 0; c < NumClasses; c++) perClass[classNames[c]] = double.IsNaN(iou[c]) ? null : iou[c];
        return new JsonObject
        {
            ["metric"] = "miou", ["miou"] = Finite(MeanIoU), ["macc"] = Finite(MeanAcc), ["aacc"] = Finite(AllAcc), ["class_iou"] = perClass,
        };
    }

    static JsonNode? Finite(double v) => double.IsNaN(v) ? null : JsonValue.Create(v);
}
