using PeftSharp.Dense;

namespace PeftSharp.Tests.Dense;

/// <summary>mmsegmentation's IoU metric and pycocotools' box AP on cases small enough to work out by hand.</summary>
public class DenseMetricsTests
{
    [Fact]
    public void Miou_per_class_iou_and_aacc_as_mmsegmentation()
    {
        // Labels 0 0 1 1 255 2 ; predictions 0 1 1 1 0 0 (the 255 pixel is ignored whatever is predicted there).
        // Class 0: intersect 1, predicted 2 (pixels 0 and 5), label 2 → union 3 → IoU 1/3. Class 1: intersect 2,
        // predicted 3, label 2 → union 3 → 2/3. Class 2: intersect 0, predicted 0, label 1 → union 1 → 0.
        // Class 3: nothing anywhere → NaN, left out of the mean. aAcc = 3 / 5.
        var m = new SegmentationMetrics(4);
        m.Add(new byte[] { 0, 1, 1, 1, 0, 0 }, new byte[] { 0, 0, 1, 1, 255, 2 });
        var iou = m.ClassIoU();
        Assert.Equal(1.0 / 3, iou[0], 12);
        Assert.Equal(2.0 / 3, iou[1], 12);
        Assert.Equal(0.0, iou[2], 12);
        Assert.True(double.IsNaN(iou[3]));
        Assert.Equal((1.0 / 3 + 2.0 / 3 + 0) / 3, m.MeanIoU, 12);
        Assert.Equal(0.6, m.AllAcc, 12);
        Assert.Equal((0.5 + 1 + 0) / 3, m.MeanAcc, 12);
        Assert.Equal("miou", m.ToJson(new[] { "a", "b", "c", "d" })["metric"]!.GetValue<string>());
    }

    [Fact]
    public void Areas_are_summed_over_the_split_before_dividing()
    {
        // Image 1: class 0 everywhere, predicted right. Image 2: class 1, predicted 0. Per-image means would give
        // (1 + 0.5·(0 + 0))…; mmsegmentation sums first: class 0 intersect 2, union 4 → 0.5; class 1 → 0.
        var m = new SegmentationMetrics(2);
        m.Add(new byte[] { 0, 0 }, new byte[] { 0, 0 });
        m.Add(new byte[] { 0, 0 }, new byte[] { 1, 1 });
        Assert.Equal(0.25, m.MeanIoU, 12);
        Assert.Equal(0.5, m.AllAcc, 12);
    }

    static CocoObject Gt(double x, double y, double w, double h, int label = 0, bool crowd = false, double? area = null) =>
        new(0, label, x, y, w, h, area ?? w * h, crowd, null);

    static CocoSummary Eval(CocoObject[][] gt, Detection[][] dt, int classes = 1) =>
        CocoEvaluator.Evaluate(gt.Select(g => (IReadOnlyList<CocoObject>)g).ToList(), dt.Select(d => (IReadOnlyList<Detection>)d).ToList(), classes);

    [Fact]
    public void Perfect_detections_score_one_and_area_ranges_without_objects_are_minus_one()
    {
        var s = Eval(new[] { new[] { Gt(0, 0, 10, 10), Gt(20, 20, 40, 40) } },
                     new[] { new[] { new Detection(0, 0, 10, 10, 0, 0.9), new Detection(20, 20, 40, 40, 0, 0.8) } });
        Assert.Equal(1, s.AP, 12);
        Assert.Equal(1, s.APSmall, 12);    // 100 px² < 32²
        Assert.Equal(1, s.APMedium, 12);   // 1600 px²
        Assert.Equal(-1, s.APLarge, 12);   // nothing ≥ 96²
        Assert.Equal(0.5, s.AR1, 12);      // one detection finds one of two
        Assert.Equal(1, s.AR100, 12);
    }

    [Fact]
    public void Iou_0_6_box_counts_at_thresholds_up_to_0_6()
    {
        // Detection [0,0,10,10] vs truth [0,0,10,6]: IoU = 60/100 = 0.6, a match at 0.50, 0.55 and 0.60 (IoU ≥ t), not beyond.
        var s = Eval(new[] { new[] { Gt(0, 0, 10, 6) } }, new[] { new[] { new Detection(0, 0, 10, 10, 0, 0.9) } });
        Assert.Equal(1, s.AP50, 12);
        Assert.Equal(0, s.AP75, 12);
        Assert.Equal(3.0 / 10, s.AP, 12);
    }

    [Fact]
    public void A_false_positive_above_the_true_one_halves_precision_at_full_recall()
    {
        // Scores: false positive 0.9, true positive 0.8 → precision [0, 0.5], recall [0, 1]; made monotone
        // [0.5, 0.5]; every one of the 101 recall points reads 0.5.
        var s = Eval(new[] { new[] { Gt(0, 0, 10, 10) } },
                     new[] { new[] { new Detection(30, 30, 10, 10, 0, 0.9), new Detection(0, 0, 10, 10, 0, 0.8) } });
        Assert.Equal(0.5, s.AP, 12);
        // The true positive first: precision 1 up to recall 1.
        var t = Eval(new[] { new[] { Gt(0, 0, 10, 10) } },
                     new[] { new[] { new Detection(30, 30, 10, 10, 0, 0.7), new Detection(0, 0, 10, 10, 0, 0.8) } });
        Assert.Equal(1, t.AP, 12);
        Assert.Equal(0, t.AR1 - 1, 12);
    }

    [Fact]
    public void Half_recall_gives_the_first_51_recall_points()
    {
        // Two objects, one found with precision 1: recall reaches 0.5; points 0.00 … 0.50 (51 of 101) read 1.
        var s = Eval(new[] { new[] { Gt(0, 0, 10, 10), Gt(40, 40, 10, 10) } }, new[] { new[] { new Detection(0, 0, 10, 10, 0, 0.9) } });
        Assert.Equal(51.0 / 101, s.AP, 12);
    }

    [Fact]
    public void Crowd_truth_is_ignored_and_absorbs_detections_inside_it()
    {
        // A crowd region and a real object; a detection inside the crowd (IoU over its own area = 1) is ignored,
        // neither true nor false; the real object found → AP 1.
        var s = Eval(new[] { new[] { Gt(0, 0, 10, 10), Gt(20, 0, 40, 40, crowd: true) } },
                     new[] { new[] { new Detection(25, 5, 10, 10, 0, 0.95), new Detection(0, 0, 10, 10, 0, 0.9) } });
        Assert.Equal(1, s.AP, 12);
        // Without the crowd flag the big object is real and unfound, and the detection inside it (IoU 100/1600) is a
        // false positive ranked first: recall 1/2 reached at precision 1/2, so 51 of 101 points read 0.5.
        var u = Eval(new[] { new[] { Gt(0, 0, 10, 10), Gt(20, 0, 40, 40) } },
                     new[] { new[] { new Detection(25, 5, 10, 10, 0, 0.95), new Detection(0, 0, 10, 10, 0, 0.9) } });
        Assert.Equal(0.5 * 51 / 101, u.AP, 12);
    }

    [Fact]
    public void Classes_are_averaged_and_a_class_without_truth_is_left_out()
    {
        // Class 0 perfect (AP 1), class 1 one detection for one object at IoU 0 (AP 0), class 2 has a detection
        // but no truth anywhere: pycocotools leaves it at −1, outside the mean → AP 0.5.
        var s = Eval(new[] { new[] { Gt(0, 0, 10, 10, 0), Gt(20, 20, 10, 10, 1) } },
                     new[] { new[] { new Detection(0, 0, 10, 10, 0, 0.9), new Detection(40, 40, 10, 10, 1, 0.9), new Detection(0, 0, 5, 5, 2, 0.9) } }, 3);
        Assert.Equal(0.5, s.AP, 12);
    }

    [Fact]
    public void Class_aware_nms_keeps_overlapping_boxes_of_other_classes()
    {
        var kept = Nms.ClassAware(new[]
        {
            new Detection(0, 0, 10, 10, 0, 0.9), new Detection(1, 0, 10, 10, 0, 0.8),   // IoU 90/110 > 0.6: suppressed
            new Detection(1, 0, 10, 10, 1, 0.7), new Detection(30, 30, 5, 5, 0, 0.6),
        }, 0.6, 100);
        Assert.Equal(new[] { 0.9, 0.7, 0.6 }, kept.Select(d => d.Score));
    }
}
