using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using PeftSharp.Evaluation;
using PeftSharp.Results;
using PeftSharp.Suite;

namespace PeftSharp.Dense;

/// <summary>
/// The dense benchmark's report: per task, V-PEFT Bench's columns (the task metric, trainable parameters of the
/// method, PPT, peak training memory, training time) and pictures: the first test images with the ground truth and
/// the predictions of a few methods drawn over them (segmentation as coloured class maps, detection as boxes).
/// </summary>
public sealed class DenseReport(DenseBenchOutcome outcome)
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Methods drawn in the pictures: V-PETL's extremes and the most used PEFT methods.</summary>
    static readonly string[] PictureMethods = { "full", "linear", "lora", "adaptformer" };

    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"Dense prediction, profile `{outcome.Profile.Name}`: {outcome.Profile.Description()}. Backbone {outcome.Checkpoint}; total {outcome.Seconds / 60:F1} min.");
        foreach (var group in outcome.Cells.GroupBy(c => c.Task))
        {
            var kind = group.First().Kind;
            string metric = kind == DenseKind.Segmentation ? "test mIoU" : "test box AP";
            sb.AppendLine();
            sb.AppendLine($"**{group.Key}** ({(kind == DenseKind.Segmentation ? "semantic segmentation, UperNet-lite head" : "detection, simple pyramid + FCOS head")})");
            sb.AppendLine();
            string extra = kind == DenseKind.Segmentation ? "aAcc" : "AP50";
            sb.AppendLine($"| Method | {metric} | {extra} | val | lr | Params (method) | Head params | PPT | Peak train memory | Train s |");
            sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
            foreach (var c in group)
            {
                var m = c.Final?.Outcome is RunOutcome o ? JsonNode.Parse(o.MetricsJson)!.AsObject() : null;
                long parameters = c.Final?.Outcome?.TrainableParams ?? 0;
                string peak = m?["peak_training_bytes"]?.GetValue<long>() is long bytes ? $"{bytes / 1048576.0:F0} MB" : "–";
                double? second = kind == DenseKind.Segmentation ? m?["aacc"]?.GetValue<double>() : m?["ap50"]?.GetValue<double>();
                string head = m?["head_params"]?.GetValue<long>().ToString("N0", Inv) ?? "–";
                sb.AppendLine(c.Error != null
                    ? $"| {c.Method} | failed: {c.Error.Split('\n')[0]} | | | | | | | | |"
                    : $"| {c.Method} | **{P(c.Test)}** | {P(second)} | {P(c.Val)} | {c.ChosenLr?.ToString("G", Inv)} | {parameters.ToString("N0", Inv)} | {head} | {(c.Test is double t ? Ppt.Compute(t, parameters).ToString("F3", Inv) : "–")} | {peak} | {c.Seconds.ToString("F0", Inv)} |");
            }
        }
        return sb.ToString();
    }

    static string P(double? fraction) => fraction is double f ? (100 * f).ToString("F1", Inv) : "–";

    public void Write(string outDir)
    {
        File.WriteAllText(Path.Combine(outDir, "dense-summary.md"), Markdown());
        File.WriteAllText(Path.Combine(outDir, "dense-report.html"), Html());
    }

    public string Html()
    {
        var sb = new StringBuilder("<!doctype html><meta charset=\"utf-8\"><title>PeftSharp dense benchmark</title>");
        sb.Append("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}figure{display:inline-block;margin:4px;text-align:center;font-size:12px}</style>");
        sb.Append("<h1>PeftSharp dense benchmark</h1><pre>").Append(WebUtility.HtmlEncode(Markdown())).Append("</pre>");
        foreach (var group in outcome.Cells.GroupBy(c => c.Task))
        {
            var info = DenseSuite.Task(group.Key);
            var task = DenseTask.Open(Path.Combine(outcome.SuiteDir, group.Key));
            var test = task.Split("test", info.ImageSize);
            sb.Append($"<h2>{WebUtility.HtmlEncode(group.Key)}: first test images</h2><table><tr><th>image</th><th>ground truth</th>");
            var methods = PictureMethods.Select(m => group.FirstOrDefault(c => c.Method == m && c.Final != null)).Where(c => c != null).ToList();
            foreach (var c in methods) sb.Append($"<th>{c!.Method} ({P(c.Test)})</th>");
            sb.Append("</tr>");
            var predictions = methods.Select(c => JsonNode.Parse(c!.Final!.Outcome!.MetricsJson)?["pictures"] as JsonObject).ToList();
            for (int i = 0; i < Math.Min(DenseRuns.PictureImages, test.Count); i++)
            {
                sb.Append("<tr><td>").Append(Picture.Svg(test.Pixels[i], test.Size, null, null)).Append("</td><td>");
                sb.Append(info.Kind == DenseKind.Segmentation ? Picture.Svg(test.Pixels[i], test.Size, test.Labels![i], null)
                    : Picture.Svg(test.Pixels[i], test.Size, null, test.Objects![i].Select(o => new Detection(o.X, o.Y, o.W, o.H, o.Label, 1)).ToList(), test.ClassNames));
                sb.Append("</td>");
                foreach (var p in predictions)
                {
                    sb.Append("<td>");
                    if (p?["maps"] is JsonArray maps && i < maps.Count) sb.Append(Picture.Svg(test.Pixels[i], test.Size, Convert.FromBase64String(maps[i]!.GetValue<string>()), null));
                    else if (p?["detections"] is JsonArray dets && i < dets.Count)
                        sb.Append(Picture.Svg(test.Pixels[i], test.Size, null, dets[i]!.AsArray().Select(d => new Detection(
                            d![0]!.GetValue<double>(), d[1]!.GetValue<double>(), d[2]!.GetValue<double>(), d[3]!.GetValue<double>(), d[4]!.GetValue<int>(), d[5]!.GetValue<double>())).ToList(), test.ClassNames));
                    sb.Append("</td>");
                }
                sb.Append("</tr>");
            }
            sb.Append("</table>");
            if (info.Kind == DenseKind.Segmentation)
                sb.Append("<p>Legend: ").Append(string.Join(" ", test.ClassNames.Select((n, c) => $"<span style=\"background:{Picture.Hex(c)};padding:0 4px\">{WebUtility.HtmlEncode(n)}</span>"))).Append("</p>");
        }
        return sb.ToString();
    }
}

/// <summary>One test image as an inline SVG, 3× enlarged: the image (a PNG data URI), optionally a class map blended
/// over it (background left clear) and boxes with class and score.</summary>
public static class Picture
{
    const int Scale = 3;
    static readonly (byte R, byte G, byte B)[] Palette =
    {
        (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
        (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    };

    public static string Hex(int c) { var p = Palette[c % Palette.Length]; return $"#{p.R:x2}{p.G:x2}{p.B:x2}"; }

    public static string Svg(byte[] rgb, int size, byte[]? classMap, IReadOnlyList<Detection>? boxes, IReadOnlyList<string>? names = null)
    {
        var pixels = (byte[])rgb.Clone();
        if (classMap != null)
            for (int p = 0; p < classMap.Length; p++)
            {
                int c = classMap[p];
                if (c == 0 || c == SegmentationFolder.Ignore) continue;
                var col = Palette[c % Palette.Length];
                pixels[3 * p] = (byte)((pixels[3 * p] + 2 * col.R) / 3);
                pixels[3 * p + 1] = (byte)((pixels[3 * p + 1] + 2 * col.G) / 3);
                pixels[3 * p + 2] = (byte)((pixels[3 * p + 2] + 2 * col.B) / 3);
            }
        string png = Convert.ToBase64String(SuiteImage.Rgb(size, size, pixels).ToPng());
        int s = size * Scale;
        var sb = new StringBuilder($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{s}\" height=\"{s}\" viewBox=\"0 0 {size} {size}\">");
        sb.Append($"<image width=\"{size}\" height=\"{size}\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{png}\"/>");
        foreach (var d in boxes ?? Array.Empty<Detection>())
        {
            string colour = Hex(d.Label + 1);
            sb.Append(FormattableString.Invariant($"<rect x=\"{d.X:F1}\" y=\"{d.Y:F1}\" width=\"{d.W:F1}\" height=\"{d.H:F1}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"0.6\"/>"));
            string label = (names != null ? names[d.Label] : d.Label.ToString(CultureInfo.InvariantCulture)) + (d.Score < 1 ? FormattableString.Invariant($" {d.Score:F2}") : "");
            sb.Append(FormattableString.Invariant($"<text x=\"{d.X:F1}\" y=\"{Math.Max(3, d.Y - 0.5):F1}\" font-size=\"3.5\" fill=\"{colour}\">{WebUtility.HtmlEncode(label)}</text>"));
        }
        return sb.Append("</svg>").ToString();
    }
}
