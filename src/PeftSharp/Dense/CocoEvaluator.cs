using System.Text.Json.Nodes;

namespace PeftSharp.Dense;

/// <summary>A detection: box [x, y, w, h] in input pixels, class, score.</summary>
public sealed record Detection(double X, double Y, double W, double H, int Label, double Score);

/// <summary>The twelve numbers pycocotools' summarize() prints for boxes (−1 where nothing was there to measure).</summary>
public sealed record CocoSummary(double AP, double AP50, double AP75, double APSmall, double APMedium, double APLarge,
                                 double AR1, double AR10, double AR100, double ARSmall, double ARMedium, double ARLarge)
{
    public JsonObject ToJson() => new()
    {
        ["metric"] = "ap", ["ap"] = AP, ["ap50"] = AP50, ["ap75"] = AP75, ["aps"] = APSmall, ["apm"] = APMedium, ["apl"] = APLarge,
        ["ar1"] = AR1, ["ar10"] = AR10, ["ar100"] = AR100, ["ars"] = ARSmall, ["arm"] = ARMedium, ["arl"] = ARLarge,
    };
}

/// <summary>
/// pycocotools' COCOeval for iouType 'bbox', transcribed step by step (evaluateImg, accumulate, summarize): per image,
/// class and area range, detections sorted by score (stable) and cut at maxDet, ground truth sorted with ignored
/// objects last; greedy matching at each IoU threshold 0.50:0.05:0.95 (a crowd object can match many detections, its
/// IoU is intersection over the detection's area; a match to an ignored object or an unmatched detection outside the
/// area range is ignored); then per class the precision–recall curve over all images, made monotone and read at 101
/// recall points (searchsorted left), averaged over classes and thresholds where defined. Ignored ground truth =
/// iscrowd, or area outside the range (COCO's area field, the mask area).
/// </summary>
public static class CocoEvaluator
{
    public static readonly double[] IoUThresholds = Enumerable.Range(0, 10).Select(i => 0.5 + i * (0.45 / 9)).ToArray();   // np.linspace(.5, .95, 10)
    public static readonly double[] RecallThresholds = Enumerable.Range(0, 101).Select(i => i / 100.0).ToArray();      // np.linspace(0, 1, 101)
    public static readonly int[] MaxDets = { 1, 10, 100 };
    const double Spacing1 = 2.220446049250313e-16;   // np.spacing(1), pycocotools' guard against 0/0
    public static readonly (double Lo, double Hi)[] AreaRanges = { (0, 1e10), (0, 32 * 32), (32 * 32, 96 * 96), (96 * 96, 1e10) };

    /// <summary>Evaluates detections against ground truth, per image (the same order in both lists).</summary>
    public static CocoSummary Evaluate(IReadOnlyList<IReadOnlyList<CocoObject>> truth, IReadOnlyList<IReadOnlyList<Detection>> detections, int numClasses)
    {
        if (truth.Count != detections.Count) throw new ArgumentException("one detection list per image");
        int T = IoUThresholds.Length, R = RecallThresholds.Length, A = AreaRanges.Length, M = MaxDets.Length;
        var precision = new double[T, R, numClasses, A, M];
        var recall = new double[T, numClasses, A, M];
        Fill(precision, -1);
        Fill(recall, -1);
        for (int k = 0; k < numClasses; k++)
            for (int a = 0; a < A; a++)
                for (int m = 0; m < M; m++)
                {
                    var evals = new List<ImageEval>();
                    for (int i = 0; i < truth.Count; i++)
                        if (EvaluateImage(truth[i].Where(g => g.Label == k).ToList(), detections[i].Where(d => d.Label == k).ToList(), AreaRanges[a], MaxDets[m]) is { } e)
                            evals.Add(e);
                    if (evals.Count == 0) continue;
                    Accumulate(evals, MaxDets[m], out var pr, out var rc);
                    if (pr is null) continue;
                    for (int t = 0; t < T; t++)
                    {
                        recall[t, k, a, m] = rc![t];
                        for (int r = 0; r < R; r++) precision[t, r, k, a, m] = pr[t, r];
                    }
                }
        double Ap(int? t, int a) => MeanDefined(Select(precision, t, a, M - 1));
        double Ar(int a, int m) => MeanDefined(SelectRecall(recall, a, m));
        return new CocoSummary(Ap(null, 0), Ap(0, 0), Ap(5, 0), Ap(null, 1), Ap(null, 2), Ap(null, 3),
                               Ar(0, 0), Ar(0, 1), Ar(0, 2), Ar(1, 2), Ar(2, 2), Ar(3, 2));
    }

    sealed record ImageEval(double[] Scores, bool[,] Matched, bool[,] DtIgnore, int NotIgnoredTruth);

    /// <summary>evaluateImg for one image and class; null when it has neither ground truth nor detections.</summary>
    static ImageEval? EvaluateImage(List<CocoObject> gt, List<Detection> dt, (double Lo, double Hi) range, int maxDet)
    {
        if (gt.Count == 0 && dt.Count == 0) return null;
        bool Ignored(CocoObject g) => g.IsCrowd || g.Area < range.Lo || g.Area > range.Hi;
        // Stable sorts, as numpy's mergesort: not ignored first; highest score first.
        gt = gt.Select((g, i) => (g, i)).OrderBy(p => Ignored(p.g) ? 1 : 0).ThenBy(p => p.i).Select(p => p.g).ToList();
        dt = dt.Select((d, i) => (d, i)).OrderByDescending(p => p.d.Score).ThenBy(p => p.i).Select(p => p.d).Take(maxDet).ToList();
        var gtIgnore = gt.Select(Ignored).ToArray();
        int T = IoUThresholds.Length, D = dt.Count, G = gt.Count;
        var gtMatched = new bool[T, G];
        var dtMatched = new bool[T, D];
        var dtIgnore = new bool[T, D];
        var ious = new double[D, G];
        for (int d = 0; d < D; d++)
            for (int g = 0; g < G; g++) ious[d, g] = IoU(dt[d], gt[g]);
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
            {
                double best = Math.Min(IoUThresholds[t], 1 - 1e-10);
                int m = -1;
                for (int g = 0; g < G; g++)
                {
                    if (gtMatched[t, g] && !gt[g].IsCrowd) continue;
                    // Matched to a real object already: stop at the ignored ones (they come last).
                    if (m > -1 && !gtIgnore[m] && gtIgnore[g]) break;
                    if (ious[d, g] < best) continue;
                    best = ious[d, g];
                    m = g;
                }
                if (m == -1) continue;
                dtIgnore[t, d] = gtIgnore[m];
                dtMatched[t, d] = true;
                gtMatched[t, m] = true;
            }
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
            {
                double area = dt[d].W * dt[d].H;
                if (!dtMatched[t, d] && (area < range.Lo || area > range.Hi)) dtIgnore[t, d] = true;
            }
        return new ImageEval(dt.Select(d => d.Score).ToArray(), dtMatched, dtIgnore, gtIgnore.Count(i => !i));
    }

    /// <summary>pycocotools' maskUtils.iou for boxes: intersection over union, or over the detection's area for a crowd.</summary>
    public static double IoU(Detection d, CocoObject g)
    {
        double w = Math.Min(d.X + d.W, g.X + g.W) - Math.Max(d.X, g.X), h = Math.Min(d.Y + d.H, g.Y + g.H) - Math.Max(d.Y, g.Y);
        if (w <= 0 || h <= 0) return 0;
        double inter = w * h, union = g.IsCrowd ? d.W * d.H : d.W * d.H + g.W * g.H - inter;
        return union <= 0 ? 0 : inter / union;
    }

    /// <summary>accumulate for one class, area range and maxDet: precision [T, R] and recall [T], or null precision when
    /// no ground truth is counted (npig = 0: pycocotools leaves the entries at −1).</summary>
    static void Accumulate(List<ImageEval> evals, int maxDet, out double[,]? precision, out double[]? recall)
    {
        precision = null;
        recall = null;
        int npig = evals.Sum(e => e.NotIgnoredTruth);
        if (npig == 0) return;
        // Concatenate each image's first maxDet detections, then a stable sort by score (numpy mergesort of −score).
        var rows = new List<(double Score, int Image, int Index)>();
        for (int i = 0; i < evals.Count; i++)
            for (int d = 0; d < Math.Min(maxDet, evals[i].Scores.Length); d++) rows.Add((evals[i].Scores[d], i, d));
        var order = rows.Select((r, n) => (r, n)).OrderByDescending(p => p.r.Score).ThenBy(p => p.n).Select(p => p.r).ToList();
        int T = IoUThresholds.Length, R = RecallThresholds.Length, nd = order.Count;
        precision = new double[T, R];
        recall = new double[T];
        for (int t = 0; t < T; t++)
        {
            var rc = new double[nd];
            var pr = new double[nd];
            double tp = 0, fp = 0;
            for (int j = 0; j < nd; j++)
            {
                var (_, image, index) = order[j];
                bool ignore = evals[image].DtIgnore[t, index], matched = evals[image].Matched[t, index];
                if (matched && !ignore) tp++;
                if (!matched && !ignore) fp++;
                rc[j] = tp / npig;
                pr[j] = tp / (fp + tp + Spacing1);
            }
            recall[t] = nd > 0 ? rc[nd - 1] : 0;
            for (int j = nd - 1; j > 0; j--)
                if (pr[j] > pr[j - 1]) pr[j - 1] = pr[j];
            for (int r = 0; r < R; r++)
            {
                int at = SearchLeft(rc, RecallThresholds[r]);
                precision[t, r] = at < nd ? pr[at] : 0;
            }
        }
    }

    /// <summary>numpy.searchsorted(side='left'): the first index whose value is ≥ x.</summary>
    static int SearchLeft(double[] sorted, double x)
    {
        int lo = 0, hi = sorted.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (sorted[mid] < x) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    static IEnumerable<double> Select(double[,,,,] p, int? t, int a, int m)
    {
        for (int ti = 0; ti < p.GetLength(0); ti++)
            if (t is null || t == ti)
                for (int r = 0; r < p.GetLength(1); r++)
                    for (int k = 0; k < p.GetLength(2); k++) yield return p[ti, r, k, a, m];
    }

    static IEnumerable<double> SelectRecall(double[,,,] rc, int a, int m)
    {
        for (int t = 0; t < rc.GetLength(0); t++)
            for (int k = 0; k < rc.GetLength(1); k++) yield return rc[t, k, a, m];
    }

    /// <summary>summarize's mean of the entries &gt; −1, or −1 when there is none.</summary>
    static double MeanDefined(IEnumerable<double> values)
    {
        double sum = 0;
        int n = 0;
        foreach (var v in values)
            if (v > -1) { sum += v; n++; }
        return n == 0 ? -1 : sum / n;
    }

    static void Fill(double[,,,,] p, double value)
    {
        for (int a = 0; a < p.GetLength(0); a++) for (int b = 0; b < p.GetLength(1); b++) for (int c = 0; c < p.GetLength(2); c++)
            for (int d = 0; d < p.GetLength(3); d++) for (int e = 0; e < p.GetLength(4); e++) p[a, b, c, d, e] = value;
    }

    static void Fill(double[,,,] p, double value)
    {
        for (int a = 0; a < p.GetLength(0); a++) for (int b = 0; b < p.GetLength(1); b++)
            for (int c = 0; c < p.GetLength(2); c++) for (int d = 0; d < p.GetLength(3); d++) p[a, b, c, d] = value;
    }
}
