using PeftSharp.Data;
using System.Text.Json.Nodes;
using PeftSharp.Suite;

namespace PeftSharp.Video;

/// <summary>
/// The two offline video tasks, rendered deterministically from the real images the suite ships (OpenCV's handwritten
/// digits, Fashion-MNIST garments, crops of OpenCV's sample photographs as backgrounds), 16 frames of 32×32 per clip:
/// <list type="bullet">
/// <item><b>video-motion</b> (in the spirit of Something-Something): ten classes that differ only in how the object
/// moves — left, right, up, down, rotating clockwise / anticlockwise, zooming in / out, two objects approaching /
/// separating. The motion is centred on a random point, angle or scale, so every frame on its own is equally likely
/// under both directions of a pair: no single frame tells the class, only the order of frames does.</item>
/// <item><b>video-appearance</b>: which of the ten garments is shown, with one of the eight single-object motions
/// drawn at random (irrelevant to the label); test clips show garment images never used in training.</item>
/// </list>
/// </summary>
public static class VideoTasks
{
    public const int Frames = 16, Size = 32;
    const int Version = 1;

    public static readonly string[] MotionClasses =
    {
        "move-left", "move-right", "move-up", "move-down", "rotate-clockwise", "rotate-anticlockwise",
        "zoom-in", "zoom-out", "approach", "separate",
    };

    public static readonly IReadOnlyList<string> Names = new[] { "video-motion", "video-appearance" };

    /// <summary>Writes the task under <paramref name="root"/> unless an identical one is there; returns it.</summary>
    public static VideoTask Ensure(string name, string root, int trainPerClass = 40, int valPerClass = 10, int testPerClass = 20, int seed = 0)
    {
        if (!Names.Contains(name)) throw new PeftSharpException("task", $"unknown video task '{name}' (known: {string.Join(", ", Names)})");
        string dir = Path.Combine(root, name);
        bool motion = name == "video-motion";
        var classes = motion ? MotionClasses : ShippedTasks.FashionClasses;
        string description = motion
            ? "Ten motion classes (left, right, up, down, clockwise, anticlockwise, zoom in, zoom out, approach, separate) of OpenCV digits and Fashion-MNIST garments on crops of OpenCV sample photographs; no single frame tells the class."
            : "Ten Fashion-MNIST garment classes with a random irrelevant motion on crops of OpenCV sample photographs; test garments never seen in training.";
        var info = new JsonObject
        {
            ["name"] = name, ["version"] = Version, ["seed"] = seed, ["frames"] = Frames, ["size"] = Size,
            ["train_per_class"] = trainPerClass, ["val_per_class"] = valPerClass, ["test_per_class"] = testPerClass, ["description"] = description,
            ["classes"] = new JsonArray(classes.Select(c => (JsonNode)c!).ToArray()),
        }.ToJsonString();
        var task = new VideoTask(name, dir, classes, Frames, description);
        string infoFile = Path.Combine(dir, "task.json");
        if (File.Exists(infoFile) && File.ReadAllText(infoFile) == info && File.Exists(task.TestList)) return task;

        var digits = ShippedData.Load(ShippedTasks.DigitsLayout, null);
        var garments = ShippedData.Load(ShippedTasks.FashionLayout, null);
        var photos = ShippedData.Load(ShippedTasks.PhotosLayout, null);
        if (System.IO.Directory.Exists(dir)) System.IO.Directory.Delete(dir, recursive: true);
        foreach (var (split, perClass) in new[] { ("train", trainPerClass), ("val", valPerClass), ("test", testPerClass) })
        {
            // Garments of the appearance task come from the shipped split that matches (test garments unseen).
            string subsetSplit = split == "test" ? ShippedSubset.Test : ShippedSubset.TrainVal;
            var lines = new string[perClass * classes.Length];
            Parallel.For(0, lines.Length, i =>
            {
                int label = i % classes.Length;
                var rng = SuiteRng.For(SuiteRng.Hash(name), (ulong)seed, SuiteRng.Hash(split), (ulong)i);
                var frames = motion
                    ? RenderMotion(label, rng, digits, garments, photos)
                    : RenderAppearance(label, rng, garments, photos, subsetSplit);
                string clip = $"{split}_{i:D4}";
                string folder = Path.Combine(task.FramesRoot, clip);
                System.IO.Directory.CreateDirectory(folder);
                for (int f = 0; f < frames.Length; f++)
                    File.WriteAllBytes(Path.Combine(folder, $"img_{f + 1:D5}.png"), new SuiteImage(Size, Size, false, frames[f]).ToPng());
                lines[i] = $"{clip} {Frames} {label}";
            });
            File.WriteAllText(Path.Combine(dir, split + ".txt"), string.Join("\n", lines) + "\n");
        }
        File.WriteAllText(Path.Combine(dir, "classes.txt"), string.Join("\n", classes) + "\n");
        File.WriteAllText(infoFile, info);
        return task;
    }

    /// <summary>One sprite's pose at clip time τ ∈ [0, 1].</summary>
    readonly record struct Pose(double X, double Y, double Scale, double Angle);

    static byte[][] RenderMotion(int label, SuiteRng rng, ShippedSubset digits, ShippedSubset garments, ShippedSubset photos)
    {
        var background = Background(rng, photos);
        var (sprite, side) = AnySprite(rng, digits, garments, null);
        var colour = SpriteColour(rng, background);
        if (label >= 8)
        {
            var (second, side2) = AnySprite(rng, digits, garments, null);
            var colour2 = SpriteColour(rng, background);
            double angle = rng.Range(0, Math.PI), cx = rng.Range(13, 19), cy = rng.Range(13, 19), scale = rng.Range(0.45, 0.6);
            double near = 7, far = 20;   // centre distances; the midpoint of the pair never moves
            return Clip(t =>
            {
                double d = (label == 8 ? far + (near - far) * t : near + (far - near) * t) / 2;
                double dx = Math.Cos(angle) * d, dy = Math.Sin(angle) * d;
                return new[] { (sprite, side, colour, new Pose(cx - dx, cy - dy, scale, 0)), (second, side2, colour2, new Pose(cx + dx, cy + dy, scale, 0)) };
            }, background);
        }
        double baseScale = rng.Range(0.6, 0.9), baseAngle = rng.Range(-Math.PI, Math.PI);
        double x = rng.Range(12, 20), y = rng.Range(12, 20);
        const double travel = 10;
        return Clip(t =>
        {
            double s = t - 0.5;   // centred on the clip's middle: the middle frame is the same for both directions
            var pose = label switch
            {
                0 => new Pose(x - travel * s, y, baseScale, baseAngle),
                1 => new Pose(x + travel * s, y, baseScale, baseAngle),
                2 => new Pose(x, y - travel * s, baseScale, baseAngle),
                3 => new Pose(x, y + travel * s, baseScale, baseAngle),
                4 => new Pose(x, y, baseScale, baseAngle + Math.PI * s),
                5 => new Pose(x, y, baseScale, baseAngle - Math.PI * s),
                6 => new Pose(x, y, baseScale * Math.Pow(1.8, s), baseAngle),
                _ => new Pose(x, y, baseScale * Math.Pow(1.8, -s), baseAngle),
            };
            return new[] { (sprite, side, colour, pose) };
        }, background);
    }

    static byte[][] RenderAppearance(int label, SuiteRng rng, ShippedSubset garments, ShippedSubset photos, string split)
    {
        var background = Background(rng, photos);
        var candidates = garments.Indices(split).Where(i => garments.Labels[i] == label).ToArray();
        int cell = candidates[rng.Next(candidates.Length)];
        var colour = SpriteColour(rng, background);
        int motion = rng.Next(8);
        double baseScale = rng.Range(0.7, 0.95), baseAngle = rng.Range(-0.4, 0.4), x = rng.Range(13, 19), y = rng.Range(13, 19);
        return Clip(t =>
        {
            double s = t - 0.5;
            var pose = motion switch
            {
                0 => new Pose(x - 8 * s, y, baseScale, baseAngle),
                1 => new Pose(x + 8 * s, y, baseScale, baseAngle),
                2 => new Pose(x, y - 8 * s, baseScale, baseAngle),
                3 => new Pose(x, y + 8 * s, baseScale, baseAngle),
                4 => new Pose(x, y, baseScale, baseAngle + 0.8 * s),
                5 => new Pose(x, y, baseScale, baseAngle - 0.8 * s),
                6 => new Pose(x, y, baseScale * Math.Pow(1.4, s), baseAngle),
                _ => new Pose(x, y, baseScale * Math.Pow(1.4, -s), baseAngle),
            };
            return new[] { (garments.Cells[cell], garments.CellWidth, colour, pose) };
        }, background);
    }

    static byte[][] Clip(Func<double, (byte[] Sprite, int Side, (double R, double G, double B) Colour, Pose Pose)[]> at, byte[] background) =>
        Enumerable.Range(0, Frames).Select(f =>
        {
            var frame = (byte[])background.Clone();
            foreach (var (sprite, side, colour, pose) in at(f / (double)(Frames - 1))) Draw(frame, sprite, side, colour, pose);
            return frame;
        }).ToArray();

    /// <summary>A 32×32 crop (side 40–100 px, resized) of one of the shipped 160×160 photographs, dimmed so sprites show.</summary>
    static byte[] Background(SuiteRng rng, ShippedSubset photos)
    {
        int cell = rng.Next(photos.Count);
        double side = rng.Range(40, 100);
        var crop = PixelOps.CropResize(photos.Cells[cell], photos.CellWidth, photos.CellHeight, 3,
                                       rng.Range(0, photos.CellWidth - side), rng.Range(0, photos.CellHeight - side), side, Size);
        for (int i = 0; i < crop.Length; i++) crop[i] = (byte)(crop[i] * 0.6);
        return crop;
    }

    static (byte[] Sprite, int Side) AnySprite(SuiteRng rng, ShippedSubset digits, ShippedSubset garments, string? split)
    {
        var subset = rng.Chance(0.5) ? digits : garments;
        return (subset.Cells[rng.Next(subset.Count)], subset.CellWidth);
    }

    static (double R, double G, double B) SpriteColour(SuiteRng rng, byte[] background)
    {
        var c = PixelOps.Hsv(rng.Range(0, 360), rng.Range(0.3, 0.8), 1.0);
        return (c.Red, c.Green, c.Blue);
    }

    /// <summary>Composites a gray sprite (ink = opacity) at a pose: inverse-mapped bilinear sampling around its centre.</summary>
    static void Draw(byte[] frame, byte[] sprite, int side, (double R, double G, double B) colour, Pose pose)
    {
        double cos = Math.Cos(pose.Angle), sin = Math.Sin(pose.Angle), centre = (side - 1) / 2.0;
        // A sprite of side `side` covers side·scale·(Size/side)… kept simple: scale 1 maps the sprite to 24 px.
        double pixelsPerSource = 24.0 * pose.Scale / side;
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
            {
                double dx = (x - pose.X) / pixelsPerSource, dy = (y - pose.Y) / pixelsPerSource;
                double u = cos * dx + sin * dy + centre, v = -sin * dx + cos * dy + centre;
                if (u < -1 || v < -1 || u > side || v > side) continue;
                double alpha = PixelOps.Sample(sprite, side, side, 1, 0, u + 0.5, v + 0.5) / 255.0;
                if (alpha <= 0) continue;
                int p = (y * Size + x) * 3;
                frame[p] = PixelOps.ClampByte(frame[p] * (1 - alpha) + colour.R * alpha);
                frame[p + 1] = PixelOps.ClampByte(frame[p + 1] * (1 - alpha) + colour.G * alpha);
                frame[p + 2] = PixelOps.ClampByte(frame[p + 2] * (1 - alpha) + colour.B * alpha);
            }
    }
}
