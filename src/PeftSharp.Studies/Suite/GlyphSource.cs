using PeftSharp.Data;
using System.Globalization;
using SkiaSharp;
using static TorchSharp.torch;

namespace PeftSharp.Suite;

/// <summary>
/// An endless labelled image source for pretraining the default backbone, disjoint from every mini-VTAB task:
/// characters (Latin, Greek, Cyrillic, symbols, kana and CJK, never the digits 0–9 or other numerals) rendered
/// from the font faces installed on the system, each sample with a random face, affine transform (rotation
/// ±25°, scale, shear, translation), colours, background gradient and noise. Class = character.
/// </summary>
public sealed class GlyphSource
{
    public const string DefaultFontDir = "/usr/share/fonts";
    static readonly string[] FontExtensions = [".ttf", ".otf", ".ttc"];
    const int MaxFacesPerFile = 64;
    const ulong HeldOutStream = 0x48454C44; // "HELD"

    readonly SKTypeface[] _faces;
    readonly int[][] _facesByClass; // indices into _faces that contain each class's glyph
    readonly Random _defaultRng;

    GlyphSource(int imageSize, SKTypeface[] faces, string[] faceNames, string[] classes, int[][] facesByClass, int seed)
    {
        ImageSize = imageSize;
        _faces = faces;
        FaceNames = faceNames;
        Classes = classes;
        _facesByClass = facesByClass;
        _defaultRng = new Random(seed);
    }

    public int ImageSize { get; }
    /// <summary>The characters, one per class, in code-point order.</summary>
    public IReadOnlyList<string> Classes { get; }
    public int NumClasses => Classes.Count;
    /// <summary>"family style (file)" of every usable face found.</summary>
    public IReadOnlyList<string> FaceNames { get; }
    public int NumFaces => FaceNames.Count;

    /// <summary>
    /// Loads every face under <paramref name="fontDir"/> (.ttf, .otf and each face of a .ttc), keeps the text faces
    /// (those with at least 90 % of A–Z and a–z), and keeps a candidate character as a class when a majority of
    /// those faces have a glyph for it — or, for scripts that only some faces cover (kana, CJK), when at least
    /// <paramref name="minFacesPerClass"/> do. A sample is only ever drawn with a face that has its glyph.
    /// </summary>
    public static GlyphSource Open(int imageSize = 32, int seed = 0, string fontDir = DefaultFontDir, int minFacesPerClass = 8)
    {
        if (imageSize < 8) throw new PeftSharpException($"glyph image size must be at least 8 pixels, got {imageSize}");
        if (!Directory.Exists(fontDir))
            throw new PeftSharpException($"{fontDir}: font folder not found; the glyph source needs TrueType/OpenType fonts " +
                "(e.g. apt-get install fonts-dejavu-core fonts-noto-core)");
        var files = Directory.EnumerateFiles(fontDir, "*", SearchOption.AllDirectories)
            .Where(f => FontExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(StringComparer.Ordinal).ToList();
        var (faces, names) = LoadTextFaces(files);
        if (faces.Count == 0)
            throw new PeftSharpException($"{fontDir}: no usable font face ({files.Count} .ttf/.otf/.ttc files, none covering A–Z and a–z); " +
                "install a font package, e.g. apt-get install fonts-dejavu-core fonts-noto-core");

        int majority = faces.Count / 2 + 1;
        var candidates = GlyphCharacters.Candidates;
        var coverage = faces.Select(face => Covers(face, candidates)).ToArray();
        var classes = new List<string>();
        var facesByClass = new List<int[]>();
        for (int c = 0; c < candidates.Length; c++)
        {
            int codePoint = candidates[c];
            var covering = Enumerable.Range(0, faces.Count).Where(f => coverage[f][c]).ToArray();
            if (covering.Length >= majority || (minFacesPerClass > 0 && covering.Length >= minFacesPerClass))
            {
                classes.Add(char.ConvertFromUtf32(codePoint));
                facesByClass.Add(covering);
            }
        }
        if (classes.Count < 2)
            throw new PeftSharpException($"{fontDir}: the {faces.Count} usable font faces render fewer than two of the glyph source's characters");
        return new GlyphSource(imageSize, faces.ToArray(), names.ToArray(), classes.ToArray(), facesByClass.ToArray(), seed);
    }

    static (List<SKTypeface> Faces, List<string> Names) LoadTextFaces(List<string> files)
    {
        var faces = new List<SKTypeface>();
        var names = new List<string>();
        foreach (string file in files)
        {
            for (int index = 0; index < MaxFacesPerFile; index++)
            {
                var face = SKTypeface.FromFile(file, index);
                if (face == null) break;
                if (Covers(face, GlyphCharacters.BasicLatin).Count(has => has) >= 0.9 * GlyphCharacters.BasicLatin.Length)
                {
                    faces.Add(face);
                    names.Add($"{face.FamilyName} {face.FontStyle.Weight}/{face.FontStyle.Slant} ({Path.GetFileName(file)}#{index})");
                }
                else face.Dispose();
                if (!file.EndsWith(".ttc", StringComparison.OrdinalIgnoreCase)) break;
            }
        }
        return (faces, names);
    }

    /// <summary>Which code points the face maps to a glyph (one batched call: ContainsGlyph is slow one at a time).</summary>
    static bool[] Covers(SKTypeface face, int[] codePoints) =>
        face.GetGlyphs((ReadOnlySpan<int>)codePoints).Select(glyph => glyph != 0).ToArray();

    /// <summary>A batch drawn with <see cref="Open"/>'s seed.</summary>
    public (byte[] Pixels, long[] Labels) NextBatch(int batchSize)
    {
        lock (_defaultRng) return NextBatch(batchSize, _defaultRng);
    }

    /// <summary>
    /// <paramref name="batchSize"/> random samples: pixels are batch × size × size × 3 bytes (HWC, RGB), labels are
    /// class indices. Each sample's parameters come from one number drawn from <paramref name="rng"/>, so the batch
    /// depends only on the generator's state, not on how the parallel rendering is scheduled.
    /// </summary>
    /// <param name="difficulty">Augmentation strength in [0, 1]: 0 draws dark upright glyphs on a light background,
    /// 1 the full range (colours, outlines, rotation, shear, shift, noise). Pretraining ramps it up (a curriculum):
    /// from scratch, a ViT stays at chance for thousands of steps on the full range (measured here).</param>
    /// <param name="activeClasses">Labels are drawn from the first this-many classes (code-point order: Latin and
    /// symbols before Greek, Cyrillic, kana and CJK); null for all. The other half of the curriculum.</param>
    public (byte[] Pixels, long[] Labels) NextBatch(int batchSize, Random rng, double difficulty = 1, int? activeClasses = null)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), "batch size must be positive");
        if (!(difficulty >= 0 && difficulty <= 1)) throw new ArgumentOutOfRangeException(nameof(difficulty), "difficulty must be in [0, 1]");
        int classes = activeClasses ?? NumClasses;
        if (classes < 1 || classes > NumClasses) throw new ArgumentOutOfRangeException(nameof(activeClasses), $"active classes must be in [1, {NumClasses}]");
        var seeds = new ulong[batchSize];
        for (int i = 0; i < batchSize; i++) seeds[i] = (ulong)rng.NextInt64();
        return Render(seeds, difficulty, classes);
    }

    /// <summary>A fixed evaluation set: the same <paramref name="seed"/> gives the same samples, drawn from a stream that training batches do not use.</summary>
    public (byte[] Pixels, long[] Labels) HeldOut(int count, int seed)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), "count must be positive");
        var seeds = Enumerable.Range(0, count).Select(i => SuiteRng.Mix(HeldOutStream, (ulong)(uint)seed, (ulong)i)).ToArray();
        return Render(seeds, 1, NumClasses);
    }

    /// <summary>Pixels from <see cref="NextBatch(int, Random, double, int?)"/> as a uint8 tensor [B, 3, S, S]. The caller owns it.</summary>
    public Tensor ToTensor(byte[] pixels)
    {
        int perImage = ImageSize * ImageSize * 3;
        if (pixels.Length == 0 || pixels.Length % perImage != 0)
            throw new ArgumentException($"expected a multiple of {perImage} bytes ({ImageSize}×{ImageSize}×3), got {pixels.Length}", nameof(pixels));
        using var hwc = tensor(pixels, new long[] { pixels.Length / perImage, ImageSize, ImageSize, 3 });
        return hwc.permute(0, 3, 1, 2).contiguous();
    }

    (byte[] Pixels, long[] Labels) Render(ulong[] seeds, double difficulty, int classes)
    {
        int perImage = ImageSize * ImageSize * 3;
        var pixels = new byte[seeds.Length * perImage];
        var labels = new long[seeds.Length];
        Parallel.For(0, seeds.Length, () => new RenderContext(), (i, _, context) =>
        {
            var rng = new SuiteRng(seeds[i]);
            int label = rng.Next(classes);
            labels[i] = label;
            DrawSample(context, rng, label, difficulty).CopyTo(pixels, i * perImage);
            return context;
        }, context => context.Dispose());
        return (pixels, labels);
    }

    byte[] DrawSample(RenderContext context, SuiteRng rng, int label, double difficulty)
    {
        int size = ImageSize;
        var canvas = context.Canvas(size);
        bool colourful = rng.NextDouble() < difficulty;
        SKColor ink;
        if (colourful)
        {
            var background = PixelOps.Hsv(rng.Range(0, 360), rng.Range(0, 0.9), rng.Range(0.05, 0.95));
            var background2 = rng.Chance(0.7)
                ? PixelOps.Hsv(rng.Range(0, 360), rng.Range(0, 0.9), Math.Clamp(PixelOps.Luma(background) + rng.Range(-0.2, 0.2), 0, 1))
                : background;
            PixelOps.GradientBackground(canvas, size, background, background2, rng);
            ink = PixelOps.Contrasting(PixelOps.Mix(background, background2, 0.5), 0.3, rng);
        }
        else
        {
            canvas.Clear(PixelOps.Hsv(0, 0, rng.Range(0.75, 1.0)));
            ink = PixelOps.Hsv(0, 0, rng.Range(0, 0.25));
        }

        var faces = _facesByClass[label];
        using var font = new SKFont(_faces[faces[rng.Next(faces.Length)]], 0.72f * size)
        {
            Edging = SKFontEdging.Antialias,
            Hinting = SKFontHinting.None,
            Subpixel = true,
        };
        // The glyph's outline, centred on its ink: size stays relative to the em, so capitals and small letters differ.
        using var path = font.GetGlyphPath(font.GetGlyph(char.ConvertToUtf32(Classes[label], 0)));
        var bounds = path.TightBounds;
        path.Offset(-bounds.MidX, -bounds.MidY);

        double d = difficulty, scale = 1 + d * rng.Range(-0.15, 0.15), maxShift = 0.1 * size * d;
        canvas.Translate(size / 2f + (float)rng.Range(-maxShift, maxShift), size / 2f + (float)rng.Range(-maxShift, maxShift));
        canvas.RotateDegrees((float)(d * rng.Range(-25, 25)));
        canvas.Skew((float)(d * rng.Range(-0.3, 0.3)), 0);
        canvas.Scale((float)(scale * (1 + d * rng.Range(-0.1, 0.1))), (float)(scale * (1 + d * rng.Range(-0.1, 0.1))));

        using var paint = new SKPaint { Color = ink, IsAntialias = true };
        double style = colourful ? rng.NextDouble() : 1;
        if (style < 0.2) // outline only
        {
            paint.Style = SKPaintStyle.Stroke;
            paint.StrokeWidth = (float)rng.Range(0.8, 1.6);
        }
        canvas.DrawPath(path, paint);
        if (style >= 0.2 && style < 0.4) // filled, with an outline in another colour
        {
            paint.Style = SKPaintStyle.Stroke;
            paint.StrokeWidth = (float)rng.Range(0.6, 1.2);
            paint.Color = PixelOps.Contrasting(ink, 0.25, rng);
            canvas.DrawPath(path, paint);
        }
        canvas.ResetMatrix();

        byte[] rgb = context.ReadRgb();
        PixelOps.AddNoise(rgb, d * rng.Range(0, 10), rng);
        return rgb;
    }
}

/// <summary>The candidate characters of the glyph source.</summary>
internal static class GlyphCharacters
{
    public static readonly int[] BasicLatin = CodePoints("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    // Greek and Cyrillic letters that look like a Latin letter (or like each other) are left out, so that no two
    // classes are drawn the same; tiny marks such as . , ' - _ are left out as they carry almost no shape.
    const string Latin = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" +
        "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿŁłŚśŽžČčĞğŞşĐđŒœ";
    const string Greek = "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθιλμξπσςτφψω";
    const string Cyrillic = "БДЖЗИЙЛЦЧШЩЪЫЬЭЮЯбвгджзийклмнптцчшщъыьэюя";
    const string Symbols = "!#$%&()*+/<=>?@[\\]{}§¶©®°±¿¡«»€£¥¢†‡•‰™∞≈≠≤≥∑∏√∫∂∆∇←↑→↓↔■□▲△▼●○◆◇★☆♠♣♥♦♪✓✗";
    const string Hiragana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん";
    // Frequent Chinese characters, without the numerals (一 二 三 … 十 百 千 万 两 零).
    const string Cjk = "的是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心" +
        "多天而能好都然没日于起还发成事只作当想看文无开手用主行方又如前所本见经头面公同已老从动长知民样现分将外但身" +
        "些与高意进把法此实回理美点月明其种声全工己话儿者向情部正名定女问力机给等很业最间新什打便位因重被走电第门相" +
        "次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山太水市眼体别处总才场师书比住员笑性通目华报立马" +
        "命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边" +
        "共风战干接它许特觉望直服毛林题建南度统色字请交爱让认算论吃义科怎元社术结功指思非流每青管夫连远资队跟带花快";

    public static readonly int[] Candidates = CodePoints(Latin + Greek + Cyrillic + Symbols + Hiragana + Cjk)
        .Where(cp => !IsNumber(cp)).Distinct().Order().ToArray();

    /// <summary>Decimal digits and any other numeral (superscripts, fractions, Roman numerals) are never classes.</summary>
    public static bool IsNumber(int codePoint) =>
        CharUnicodeInfo.GetUnicodeCategory(codePoint) is UnicodeCategory.DecimalDigitNumber
            or UnicodeCategory.OtherNumber or UnicodeCategory.LetterNumber
        || "一二三四五六七八九十百千万两零".Contains(char.ConvertFromUtf32(codePoint));

    static int[] CodePoints(string text)
    {
        var points = new List<int>();
        for (int i = 0; i < text.Length; i += char.IsSurrogatePair(text, i) ? 2 : 1)
            points.Add(char.ConvertToUtf32(text, i));
        return points.ToArray();
    }
}
