using PeftSharp.Data;
using SkiaSharp;

namespace PeftSharp.Suite;

/// <summary>A rendered image (HWC RGB bytes) with its caption, and a key naming the scene it shows whatever the
/// wording (two captions of one scene, "a red circle left of a blue square" and "a blue square right of a red
/// circle", share it).</summary>
public sealed record CaptionedImage(byte[] Pixels, string Caption, string SceneKey);

/// <summary>
/// Flat 32×32 scenes of one or two coloured shapes on a dark background, with a caption generated from the scene:
/// "a large red circle", "two small blue squares", "a small green cross left of a large yellow triangle". The
/// vocabulary is 8 colours × 4 shapes × 2 sizes and 4 relations (left of, right of, above, below), so captions are
/// compositional: a model must bind colour, shape and size to the right object and read their arrangement. Every
/// sample depends only on its seed.
/// </summary>
public static class CaptionScenes
{
    public const int Size = 32;
    public static readonly IReadOnlyList<string> Colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"];
    static readonly double[] Hues = [0, 120, 225, 55, 280, 28, -1, 185]; // -1: white
    public static readonly IReadOnlyList<string> Shapes = ["square", "circle", "triangle", "cross"];
    public static readonly IReadOnlyList<string> SizeWords = ["small", "large"];
    static readonly (double Lo, double Hi)[] Radii = [(3.2, 4.3), (6.2, 7.8)];

    readonly record struct Thing(int Colour, int Shape, int SizeClass, double X, double Y, double Radius)
    {
        public string Words => $"{SizeWords[SizeClass]} {Colours[Colour]} {Shapes[Shape]}";
    }

    /// <summary>The scene of <paramref name="seed"/>, rendered and captioned.</summary>
    public static CaptionedImage Render(ulong seed)
    {
        using var context = new RenderContext();
        return Render(context, new SuiteRng(seed));
    }

    /// <summary>One scene per seed, rendered in parallel (the result depends only on the seeds).</summary>
    public static IReadOnlyList<CaptionedImage> Render(IReadOnlyList<ulong> seeds)
    {
        var items = new CaptionedImage[seeds.Count];
        Parallel.For(0, seeds.Count, () => new RenderContext(), (i, _, context) =>
        {
            items[i] = Render(context, new SuiteRng(seeds[i]));
            return context;
        }, context => context.Dispose());
        return items;
    }

    internal static CaptionedImage Render(RenderContext context, SuiteRng rng)
    {
        var (things, caption, key) = Compose(rng);
        var canvas = context.Canvas(Size);
        canvas.Clear(PixelOps.Hsv(rng.Range(0, 360), rng.Range(0, 0.25), rng.Range(0.08, 0.3)));
        foreach (var t in things) Draw(canvas, t, rng);
        byte[] rgb = context.ReadRgb();
        PixelOps.AddNoise(rgb, rng.Range(1, 5), rng);
        return new CaptionedImage(rgb, caption, key);
    }

    /// <summary>A scene and its caption: one object (30 %), two identical ones (10 %), or two in a relation.</summary>
    static (List<Thing> Things, string Caption, string Key) Compose(SuiteRng rng)
    {
        double kind = rng.NextDouble();
        if (kind < 0.3)
        {
            var t = Place(rng, RandomLook(rng));
            return ([t], $"a {t.Words}", t.Words);
        }
        if (kind < 0.4)
        {
            var look = RandomLook(rng);
            var (a, b) = PlacePair(rng, look, look, rng.Next(2) == 0);
            string plural = $"two {SizeWords[look.SizeClass]} {Colours[look.Colour]} {Shapes[look.Shape]}s";
            return ([a, b], plural, plural);
        }
        var first = RandomLook(rng);
        var second = RandomLook(rng);
        while (second == first) second = RandomLook(rng);
        bool horizontal = rng.Next(2) == 0;
        var (p, q) = PlacePair(rng, first, second, horizontal); // p is left of (or above) q
        string canonical = $"{p.Words} {(horizontal ? "left of" : "above")} {q.Words}";
        string caption = rng.Next(2) == 0
            ? $"a {p.Words} {(horizontal ? "left of" : "above")} a {q.Words}"
            : $"a {q.Words} {(horizontal ? "right of" : "below")} a {p.Words}";
        return ([p, q], caption, canonical);
    }

    static (int Colour, int Shape, int SizeClass) RandomLook(SuiteRng rng) => (rng.Next(Colours.Count), rng.Next(Shapes.Count), rng.Next(2));

    /// <summary>Two objects, the first clearly left of (or above) the second: its offset along that axis is at least
    /// twice the offset across it, and their outlines keep a pixel apart.</summary>
    static (Thing First, Thing Second) PlacePair(SuiteRng rng, (int, int, int) first, (int, int, int) second, bool horizontal)
    {
        while (true)
        {
            var a = Place(rng, first);
            var b = Place(rng, second);
            double along = horizontal ? b.X - a.X : b.Y - a.Y, across = Math.Abs(horizontal ? b.Y - a.Y : b.X - a.X);
            bool apart = Math.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y)) > a.Radius + b.Radius + 1;
            if (apart && along > 0 && along >= 2 * across) return (a, b);
        }
    }

    static Thing Place(SuiteRng rng, (int Colour, int Shape, int SizeClass) look)
    {
        var (lo, hi) = Radii[look.SizeClass];
        double r = rng.Range(lo, hi), margin = r + 1;
        return new Thing(look.Colour, look.Shape, look.SizeClass, rng.Range(margin, Size - margin), rng.Range(margin, Size - margin), r);
    }

    static void Draw(SKCanvas canvas, Thing t, SuiteRng rng)
    {
        double hue = Hues[t.Colour];
        var colour = hue < 0 ? PixelOps.Hsv(0, 0, rng.Range(0.85, 1.0))
                             : PixelOps.Hsv(hue + rng.Range(-8, 8), rng.Range(0.7, 1.0), rng.Range(0.75, 1.0));
        using var paint = new SKPaint { Color = colour, IsAntialias = true, Style = SKPaintStyle.Fill };
        float x = (float)t.X, y = (float)t.Y, r = (float)t.Radius;
        switch (Shapes[t.Shape])
        {
            case "square":
                canvas.DrawRect(x - 0.85f * r, y - 0.85f * r, 1.7f * r, 1.7f * r, paint);
                break;
            case "circle":
                canvas.DrawCircle(x, y, r, paint);
                break;
            case "triangle":
                using (var path = new SKPath())
                {
                    path.MoveTo(x, y - r);
                    path.LineTo(x + 0.95f * r, y + 0.75f * r);
                    path.LineTo(x - 0.95f * r, y + 0.75f * r);
                    path.Close();
                    canvas.DrawPath(path, paint);
                }
                break;
            default: // cross: a plus sign of two bars
                canvas.DrawRect(x - r, y - 0.33f * r, 2 * r, 0.66f * r, paint);
                canvas.DrawRect(x - 0.33f * r, y - r, 0.66f * r, 2 * r, paint);
                break;
        }
    }
}
