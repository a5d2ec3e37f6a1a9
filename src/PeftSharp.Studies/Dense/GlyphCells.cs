using PeftSharp.Data;
using PeftSharp.Suite;
using SkiaSharp;

namespace PeftSharp.Dense;

/// <summary>
/// Glyph objects for the built-in dense tasks: ten capital letters the default backbone was pretrained on
/// (among <see cref="GlyphSource"/>'s first classes in code-point order), rendered as gray ink cells from the six faces of Debian's
/// fonts-dejavu-core (Sans, Serif and Sans Mono, regular and bold), each with its own rotation (±15°), shear (±0.2)
/// and aspect (±10 %), the glyph's ink scaled so its larger side is 26 of the cell's 32 pixels. Train and val cells and test cells come from separate
/// random streams. The cells are the shipped subsets' kind of object (value = ink coverage), so the tasks composite
/// them exactly as garments and digits.
/// </summary>
internal static class GlyphCells
{
    public const string FontDir = "/usr/share/fonts/truetype/dejavu";
    public const string FontPackage = "fonts-dejavu-core";
    /// <summary>Distinct shapes (no O/Q, E/F, P/R, I/L pairs).</summary>
    public static readonly string[] Classes = ["A", "B", "E", "G", "H", "K", "M", "R", "S", "X"];
    public static readonly string[] Faces = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"];
    public const int Side = 32, PerClass = 100;

    /// <summary>PerClass cells per class for train+val, then as many for test: a subset like the shipped ones.</summary>
    public static ShippedSubset Render(ulong seed, string fontDir = FontDir)
    {
        var faces = Faces.Select(f =>
        {
            string path = Path.Combine(fontDir, f);
            if (!File.Exists(path))
                throw new PeftSharpException("font", $"{path}: font file not found; the glyph dense tasks draw their letters with {FontPackage} (apt-get install {FontPackage})");
            return SKTypeface.FromFile(path) ?? throw new PeftSharpException("font", $"{path}: not a readable font");
        }).ToArray();
        try
        {
            int count = 2 * Classes.Length * PerClass;
            var cells = new byte[count][];
            var labels = new int[count];
            var splits = new string[count];
            var sources = new string[count];
            Parallel.For(0, count, i =>
            {
                int split = i / (Classes.Length * PerClass), label = i % (Classes.Length * PerClass) / PerClass;
                var rng = SuiteRng.For(seed, SuiteRng.Hash("glyph-cells"), (ulong)split, (ulong)i);
                int face = rng.Next(faces.Length);
                cells[i] = Draw(faces[face], Classes[label], rng);
                labels[i] = label;
                splits[i] = split == 0 ? ShippedSubset.TrainVal : ShippedSubset.Test;
                sources[i] = Faces[face];
            });
            return new ShippedSubset("glyphs", Side, Side, true, 50, splits, labels, sources, cells);
        }
        finally
        {
            foreach (var f in faces) f.Dispose();
        }
    }

    /// <summary>White ink on black, antialiased: the glyph's outline centred and scaled so its larger side fills 26 of
    /// the 32 pixels after the random transform.</summary>
    static byte[] Draw(SKTypeface typeface, string character, SuiteRng rng)
    {
        using var font = new SKFont(typeface, 64) { Edging = SKFontEdging.Antialias, Hinting = SKFontHinting.None, Subpixel = true };
        using var path = font.GetGlyphPath(font.GetGlyph(char.ConvertToUtf32(character, 0)));
        var matrix = SKMatrix.CreateRotationDegrees((float)rng.Range(-15, 15))
            .PreConcat(SKMatrix.CreateSkew((float)rng.Range(-0.2, 0.2), 0))
            .PreConcat(SKMatrix.CreateScale((float)(1 + rng.Range(-0.1, 0.1)), (float)(1 + rng.Range(-0.1, 0.1))));
        path.Transform(matrix);
        var bounds = path.TightBounds;
        float scale = 26f / Math.Max(bounds.Width, bounds.Height);
        using var bitmap = new SKBitmap(new SKImageInfo(Side, Side, SKColorType.Gray8, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.Black);
            canvas.Translate(Side / 2f, Side / 2f);
            canvas.Scale(scale);
            canvas.Translate(-bounds.MidX, -bounds.MidY);
            using var paint = new SKPaint { Color = SKColors.White, IsAntialias = true };
            canvas.DrawPath(path, paint);
        }
        return bitmap.GetPixelSpan().ToArray();
    }
}
