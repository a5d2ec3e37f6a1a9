namespace PeftSharp.Dense;

/// <summary>Class-aware greedy non-maximum suppression (torchvision's batched_nms): within each class, boxes in
/// descending score order suppress later boxes overlapping them by more than the IoU threshold; boxes of different
/// classes never suppress each other.</summary>
public static class Nms
{
    public static List<Detection> ClassAware(IEnumerable<Detection> candidates, double iouThreshold, int maxDetections)
    {
        var kept = new List<Detection>();
        foreach (var group in candidates.GroupBy(d => d.Label))
        {
            var order = group.Select((d, i) => (d, i)).OrderByDescending(p => p.d.Score).ThenBy(p => p.i).Select(p => p.d).ToList();
            var keep = new List<Detection>();
            foreach (var d in order)
                if (keep.All(k => IoU(k, d) <= iouThreshold)) keep.Add(d);
            kept.AddRange(keep);
        }
        return kept.OrderByDescending(d => d.Score).Take(maxDetections).ToList();
    }

    public static double IoU(Detection a, Detection b)
    {
        double w = Math.Min(a.X + a.W, b.X + b.W) - Math.Max(a.X, b.X), h = Math.Min(a.Y + a.H, b.Y + b.H) - Math.Max(a.Y, b.Y);
        if (w <= 0 || h <= 0) return 0;
        double inter = w * h;
        return inter / (a.W * a.H + b.W * b.H - inter);
    }
}
