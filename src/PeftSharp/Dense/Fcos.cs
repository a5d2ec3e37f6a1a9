using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Dense;

/// <summary>
/// FCOS's training targets, losses and decoding. A location is positive for an object when it lies in the object's
/// centre region (1.5 strides around the box centre, clipped to the box) and the largest of its four distances to
/// the box's sides falls in its level's range (here [0, 3s₀], [3s₀, 3s₁], [3s₁, ∞) for strides sᵢ: FCOS's 8×
/// ranges scaled to objects a few patches wide); of several objects the smallest wins. Crowd objects are not targets.
/// </summary>
public static class Fcos
{
    public const double CenterRadius = 1.5, RangeFactor = 3, FocalAlpha = 0.25, FocalGamma = 2;
    public const double ScoreThreshold = 0.05, NmsThreshold = 0.6;
    public const int PreNmsTop = 1000, MaxDetections = 100;

    /// <summary>Per location: class (−1 = background) and distances (l, t, r, b) to its object's sides.</summary>
    public static (long[] Labels, float[] Distances) Targets(FcosLocations loc, IReadOnlyList<CocoObject> objects)
    {
        int n = loc.Count;
        var labels = new long[n];
        var dist = new float[n * 4];
        Array.Fill(labels, -1L);
        var bestArea = new double[n];
        Array.Fill(bestArea, double.PositiveInfinity);
        for (int i = 0; i < n; i++)
        {
            int level = loc.Level[i];
            double stride = loc.Strides[level];
            double lo = level == 0 ? 0 : RangeFactor * loc.Strides[level - 1];
            double hi = level == loc.Strides.Length - 1 ? double.PositiveInfinity : RangeFactor * stride;
            double x = loc.X[i], y = loc.Y[i];
            foreach (var o in objects)
            {
                if (o.IsCrowd || o.W <= 0 || o.H <= 0) continue;
                double l = x - o.X, t = y - o.Y, r = o.X + o.W - x, b = o.Y + o.H - y;
                if (Math.Min(Math.Min(l, t), Math.Min(r, b)) <= 0) continue;
                double cx = o.X + o.W / 2, cy = o.Y + o.H / 2, radius = CenterRadius * stride;
                double x0 = Math.Max(o.X, cx - radius), x1 = Math.Min(o.X + o.W, cx + radius);
                double y0 = Math.Max(o.Y, cy - radius), y1 = Math.Min(o.Y + o.H, cy + radius);
                if (x <= x0 || x >= x1 || y <= y0 || y >= y1) continue;
                double reach = Math.Max(Math.Max(l, t), Math.Max(r, b));
                if (reach < lo || reach > hi) continue;
                double area = o.W * o.H;
                if (area >= bestArea[i]) continue;
                bestArea[i] = area;
                labels[i] = o.Label;
                (dist[4 * i], dist[4 * i + 1], dist[4 * i + 2], dist[4 * i + 3]) = ((float)l, (float)t, (float)r, (float)b);
            }
        }
        return (labels, dist);
    }

    /// <summary>Sigmoid focal loss (normalised by the positives) + GIoU loss weighted by the centerness targets +
    /// centerness BCE, FCOS's three terms.</summary>
    public static Tensor Loss(FcosOutputs outputs, IReadOnlyList<IReadOnlyList<CocoObject>> truth)
    {
        long b = outputs.ClassLogits.shape[0], n = outputs.ClassLogits.shape[1], k = outputs.ClassLogits.shape[2];
        var labels = new long[b * n];
        var dist = new float[b * n * 4];
        for (int i = 0; i < b; i++)
        {
            var (l, d) = Targets(outputs.Locations, truth[i]);
            Array.Copy(l, 0, labels, i * n, n);
            Array.Copy(d, 0, dist, i * n * 4, n * 4);
        }
        var device = outputs.ClassLogits.device;
        var labelT = tensor(labels, new[] { b, n }).to(device);
        var positive = labelT.ge(0);
        long numPositive = positive.sum().item<long>();
        double normaliser = Math.Max(1, numPositive);

        var logits = outputs.ClassLogits.to(float32);
        var onehot = F.one_hot(labelT.clamp_min(0), k).to(float32) * positive.unsqueeze(-1).to(float32);
        var p = logits.sigmoid();
        var ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction: nn.Reduction.None);
        var pt = p * onehot + (1 - p) * (1 - onehot);
        var alpha = FocalAlpha * onehot + (1 - FocalAlpha) * (1 - onehot);
        var focal = (alpha * ce * (1 - pt).pow(FocalGamma)).sum() / normaliser;
        if (numPositive == 0) return focal;

        var index = positive.reshape(-1).nonzero().squeeze(1);
        var predicted = outputs.Distances.to(float32).reshape(-1, 4).index_select(0, index);
        var target = tensor(dist, new[] { b * n, 4 }).to(device).index_select(0, index);
        var centerTarget = CenternessTarget(target);
        var giou = (GIoULoss(predicted, target) * centerTarget).sum() / centerTarget.sum().clamp_min(1e-6);
        var ctrLogits = outputs.Centerness.to(float32).reshape(-1).index_select(0, index);
        var ctrLoss = F.binary_cross_entropy_with_logits(ctrLogits, centerTarget, reduction: nn.Reduction.Mean);
        return focal + giou + ctrLoss;
    }

    /// <summary>sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b)).</summary>
    static Tensor CenternessTarget(Tensor ltrb)
    {
        var lr = ltrb[.., TensorIndex.Tensor(tensor(new long[] { 0, 2 }))];
        var tb = ltrb[.., TensorIndex.Tensor(tensor(new long[] { 1, 3 }))];
        return (lr.min(1).values / lr.max(1).values * (tb.min(1).values / tb.max(1).values)).sqrt();
    }

    /// <summary>1 − GIoU of two boxes given as distances from the same point (FCOS's IOULoss, 'giou').</summary>
    static Tensor GIoULoss(Tensor pred, Tensor target)
    {
        Tensor P(int i) => pred[.., i];
        Tensor T(int i) => target[.., i];
        var predArea = (P(0) + P(2)) * (P(1) + P(3));
        var targetArea = (T(0) + T(2)) * (T(1) + T(3));
        var wi = minimum(P(0), T(0)) + minimum(P(2), T(2));
        var hi = minimum(P(1), T(1)) + minimum(P(3), T(3));
        var wg = maximum(P(0), T(0)) + maximum(P(2), T(2));
        var hg = maximum(P(1), T(1)) + maximum(P(3), T(3));
        var intersection = wi * hi;
        var union = predArea + targetArea - intersection;
        var enclosing = wg * hg + 1e-7;
        var iou = (intersection + 1) / (union + 1);
        return 1 - (iou - (enclosing - union) / enclosing);
    }

    /// <summary>Detections per image: score √(σ(class)·σ(centerness)) above 0.05, the best 1000, boxes clipped to the
    /// image, class-aware NMS at IoU 0.6, at most 100.</summary>
    public static List<List<Detection>> Decode(FcosOutputs outputs, int imageWidth, int imageHeight)
    {
        using var _ = no_grad();
        var scores = (outputs.ClassLogits.to(float32).sigmoid() * outputs.Centerness.to(float32).sigmoid().unsqueeze(-1)).sqrt().cpu();
        var dist = outputs.Distances.to(float32).cpu();
        long b = scores.shape[0], n = scores.shape[1], k = scores.shape[2];
        var s = scores.data<float>().ToArray();
        var d = dist.data<float>().ToArray();
        var loc = outputs.Locations;
        var result = new List<List<Detection>>();
        for (int i = 0; i < b; i++)
        {
            var candidates = new List<(float Score, int Location, int Label)>();
            for (int j = 0; j < n; j++)
                for (int c = 0; c < k; c++)
                {
                    float v = s[(i * n + j) * k + c];
                    if (v > ScoreThreshold) candidates.Add((v, j, c));
                }
            var detections = candidates.OrderByDescending(c => c.Score).Take(PreNmsTop).Select(c =>
            {
                int at = (int)((i * n + c.Location) * 4);
                double x0 = Math.Clamp(loc.X[c.Location] - d[at], 0, imageWidth), y0 = Math.Clamp(loc.Y[c.Location] - d[at + 1], 0, imageHeight);
                double x1 = Math.Clamp(loc.X[c.Location] + d[at + 2], 0, imageWidth), y1 = Math.Clamp(loc.Y[c.Location] + d[at + 3], 0, imageHeight);
                return new Detection(x0, y0, x1 - x0, y1 - y0, c.Label, c.Score);
            }).Where(det => det.W > 0 && det.H > 0);
            result.Add(Nms.ClassAware(detections, NmsThreshold, MaxDetections));
        }
        return result;
    }
}
