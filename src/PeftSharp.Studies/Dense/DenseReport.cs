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
        sb.AppendLine($"Dense prediction, profile `{outcome.Profile.Name}`: {outcome.Profile.Description()}. Backbone {outcome.Checkpoint}; wall time of this invocation {outcome.Seconds / 60:F1} min (runs already in the database are reused, not retrained).");
        foreach (var group in outcome.Cells.GroupBy(c => c.Task))
        {
            var kind = group.First().Kind;
            string metric = kind == DenseKind.Segmentation ? "test mIoU" : "test box AP";
            sb.AppendLine();
            sb.AppendLine($"**{group.Key}** ({(kind == DenseKind.Segmentation ? $"semantic segmentation, {(outcome.Profile.SegHead == "uper" ? "UperNet-lite" : outcome.Profile.SegHead)} head" : "detection, simple pyramid + FCOS head")})");
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
        if (outcome.Speeds.Count > 0)
        {
            var plain = outcome.Speeds[0].ImagesPerSecond;
            sb.AppendLine();
            sb.AppendLine($"Inference ({outcome.SpeedSetting}): " + string.Join(", ", outcome.Speeds.Select(s =>
                $"{s.Variant} {s.ImagesPerSecond.ToString("F0", Inv)} img/s ({(s.ImagesPerSecond / plain).ToString("F2", Inv)}×)")) + ".");
        }
        return sb.ToString();
    }

    static string P(double? fraction) => fraction is double f ? (100 * f).ToString("F1", Inv) : "–";

    public void Write(string outDir)
    {
        File.WriteAllText(Path.Combine(outDir, "dense-summary.md"), Markdown());
        File.WriteAllText(Path.Combine(outDir, "dense-report.html"), Html());
        File.WriteAllBytes(Path.Combine(outDir, "dense-pictures.png"), Png());
    }

    /// <summary>The pictures as one PNG (for documents without inline SVG): per task, the first test images in rows;
    /// columns ground truth, then each picture method's prediction, labelled above.</summary>
    public byte[] Png(int images = 3, int scale = 3)
    {
        var groups = outcome.Cells.GroupBy(c => c.Task).ToList();
        int size = DenseSuite.Size * scale, pad = 4, label = 14;
        int columns = 1 + PictureMethods.Length;
        int width = columns * (size + pad) + pad, height = groups.Count * (label + images * (size + pad)) + pad;
        using var bitmap = new SkiaSharp.SKBitmap(width, height);
        using var canvas = new SkiaSharp.SKCanvas(bitmap);
        canvas.Clear(SkiaSharp.SKColors.White);
        using var text = new SkiaSharp.SKPaint { Color = SkiaSharp.SKColors.Black, TextSize = 11, IsAntialias = true };
        int top = pad;
        foreach (var group in groups)
        {
            var info = DenseSuite.Task(group.Key);
            var test = DenseTask.Open(Path.Combine(outcome.SuiteDir, group.Key)).Split("test", info.ImageSize);
            var methods = PictureMethods.Select(m => group.FirstOrDefault(c => c.Method == m && c.Final != null)).ToList();
            var titles = new[] { $"{group.Key}: truth" }.Concat(methods.Select((c, i) => c == null ? PictureMethods[i] : $"{c.Method} {P(c.Test)}")).ToList();
            for (int col = 0; col < columns; col++) canvas.DrawText(titles[col], pad + col * (size + pad), top + label - 3, text);
            top += label;
            var predictions = methods.Select(c => c?.Final?.Outcome is RunOutcome o ? JsonNode.Parse(o.MetricsJson)?["pictures"] as JsonObject : null).ToList();
            for (int i = 0; i < Math.Min(images, test.Count); i++)
            {
                for (int col = 0; col < columns; col++)
                {
                    byte[]? map = null;
                    List<Detection>? boxes = null;
                    if (col == 0)
                    {
                        map = test.Labels?[i];
                        boxes = test.Objects?[i].Select(o => new Detection(o.X, o.Y, o.W, o.H, o.Label, 1)).ToList();
                    }
                    else if (predictions[col - 1] is JsonObject p)
                    {
                        if (p["maps"] is JsonArray maps && i < maps.Count) map = Convert.FromBase64String(maps[i]!.GetValue<string>());
                        if (p["detections"] is JsonArray dets && i < dets.Count)
                            boxes = dets[i]!.AsArray().Select(d => new Detection(d![0]!.GetValue<double>(), d[1]!.GetValue<double>(), d[2]!.GetValue<double>(),
                                                                                 d[3]!.GetValue<double>(), d[4]!.GetValue<int>(), d[5]!.GetValue<double>())).ToList();
                    }
                    var pixels = Picture.Blend(test.Pixels[i], map);
                    float x0 = pad + col * (size + pad), y0 = top + i * (size + pad);
                    using var image = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(test.Size, test.Size, SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Opaque));
                    for (int y = 0; y < test.Size; y++)
                        for (int x = 0; x < test.Size; x++)
                        {
                            int q = 3 * (y * test.Size + x);
                            image.SetPixel(x, y, new SkiaSharp.SKColor(pixels[q], pixels[q + 1], pixels[q + 2]));
                        }
                    canvas.DrawBitmap(image, new SkiaSharp.SKRect(x0, y0, x0 + size, y0 + size));
                    foreach (var d in boxes ?? new List<Detection>())
                    {
                        var c = SkiaSharp.SKColor.Parse(Picture.Hex(d.Label + 1));
                        using var stroke = new SkiaSharp.SKPaint { Color = c, Style = SkiaSharp.SKPaintStyle.Stroke, StrokeWidth = 2 };
                        canvas.DrawRect((float)(x0 + d.X * scale), (float)(y0 + d.Y * scale), (float)(d.W * scale), (float)(d.H * scale), stroke);
                        using var tag = new SkiaSharp.SKPaint { Color = c, TextSize = 10, IsAntialias = true, FakeBoldText = true };
                        canvas.DrawText(test.ClassNames[d.Label], (float)(x0 + d.X * scale + 2), (float)(y0 + d.Y * scale + 10), tag);
                    }
                }
            }
            top += Math.Min(images, test.Count) * (size + pad);
        }
        using var data = SkiaSharp.SKImage.FromBitmap(bitmap).Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
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

    /// <summary>The image with a class map blended over it (background left clear).</summary>
    public static byte[] Blend(byte[] rgb, byte[]? classMap)
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
        return pixels;
    }

    public static string Svg(byte[] rgb, int size, byte[]? classMap, IReadOnlyList<Detection>? boxes, IReadOnlyList<string>? names = null)
    {
        var pixels = Blend(rgb, classMap);
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
