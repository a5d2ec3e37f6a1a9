using PeftSharp.Data;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Suite;
using SkiaSharp;

namespace PeftSharp.Dense;

/// <summary>What a built-in dense task is: its name, kind, classes and split sizes.</summary>
public sealed record DenseTaskInfo(string Name, DenseKind Kind, IReadOnlyList<string> ClassNames, int ImageSize, int Train, int Val, int Test, string Provenance)
{
    /// <summary>Which shipped cells are the objects.</summary>
    public DenseObjects Objects { get; init; }
    /// <summary>An object's side in pixels is drawn from [MinSide, MaxSide].</summary>
    public int MinSide { get; init; }
    public int MaxSide { get; init; }
    /// <summary>1 to MaxObjects objects per image.</summary>
    public int MaxObjects { get; init; }
    /// <summary>Objects may occlude each other (later ones in front); otherwise their squares never overlap.</summary>
    public bool Overlap { get; init; }
    /// <summary>Objects are square tiles: the cell's ink drawn on a plate of another colour, the whole square the object.</summary>
    public bool Tiles { get; init; }
}

/// <summary>The cells a built-in dense task composites: Fashion-MNIST garments or OpenCV's handwritten digits (shipped),
/// or capital letters drawn from fonts-dejavu-core (<see cref="GlyphCells"/>).</summary>
public enum DenseObjects { Garments, Digits, Glyphs }

/// <summary>
/// The built-in offline dense tasks, made deterministically from real images: objects composited at random scales and
/// positions onto crops of the twelve OpenCV sample photographs the suite ships (data/suite, embedded in the library),
/// with exact per-pixel masks (the object is drawn exactly where its mask is) and boxes (the mask's extent). The objects
/// are the suite's shipped garments and digits, or letters on tiles drawn from fonts-dejavu-core (<see cref="GlyphCells"/>).
/// They are written in the public formats (<see cref="SegmentationFolder"/>, <see cref="CocoDataset"/>), so training
/// reads them through the same loaders as a user's data. Train and val objects come from the train+val cells and the
/// top-left/bottom-right quadrants of the photographs; test objects from the test cells and the other two quadrants,
/// so no test object or background region is seen in training.
/// </summary>
public static class DenseSuite
{
    public const int GeneratorVersion = 1, Size = 64;
    public const string Segmentation = "garments-seg", Detection = "digits-det", GlyphSegmentation = "glyphs-seg", GlyphDetection = "glyphs-det";
    const int Seed = 20260301;
    const string TaskFile = "task.json";

    public static readonly DenseTaskInfo GarmentsSeg = new(Segmentation, DenseKind.Segmentation,
        new[] { "background" }.Concat(ShippedTasks.FashionClasses).ToArray(), Size, 480, 120, 240,
        "1–3 Fashion-MNIST garments (the suite's shipped cells, " + ShippedTasks.FashionVersion + ") per 64×64 image, each 20–40 px, " +
        "tinted, on a crop of an OpenCV sample photograph (" + ShippedTasks.OpenCvVersion + "); mask = garment pixels (cell value ≥ 48 after resizing), later garments in front; 11 classes (background + 10 garments).")
    { Objects = DenseObjects.Garments, MinSide = 20, MaxSide = 40, MaxObjects = 3, Overlap = true };

    public static readonly DenseTaskInfo DigitsDet = new(Detection, DenseKind.Detection, ShippedTasks.DigitClasses, Size, 480, 120, 240,
        "1–4 handwritten OpenCV digits (the suite's shipped cells, " + ShippedTasks.OpenCvVersion + ") per 64×64 image, each 12–32 px, " +
        "tinted, not overlapping, on a crop of an OpenCV sample photograph; box = the digit's ink extent, area = its ink pixels, RLE mask; 10 classes.")
    { Objects = DenseObjects.Digits, MinSide = 12, MaxSide = 32, MaxObjects = 4 };

    const string Letters = "capital letters (" + "A B E G H K M R S X" + ") drawn from the six faces of " + GlyphCells.FontPackage +
        " with their own rotation, shear and aspect, ink on a plate of another colour";

    /// <summary>Letters on square tiles, the scale the default backbone was pretrained at (a glyph filling 32 px):
    /// the frozen backbone's patch tokens tell these classes apart where they do not tell garments or digits apart.</summary>
    public static readonly DenseTaskInfo GlyphsSeg = new(GlyphSegmentation, DenseKind.Segmentation,
        new[] { "background" }.Concat(GlyphCells.Classes).ToArray(), Size, 480, 120, 240,
        "1–2 tiles per 64×64 image, each a 32–48 px square showing one of ten " + Letters + ", not overlapping, on a crop of an " +
        "OpenCV sample photograph (" + ShippedTasks.OpenCvVersion + "); mask = the tile's square; 11 classes (background + 10 letters).")
    { Objects = DenseObjects.Glyphs, MinSide = 32, MaxSide = 48, MaxObjects = 2, Tiles = true };

    public static readonly DenseTaskInfo GlyphsDet = new(GlyphDetection, DenseKind.Detection, GlyphCells.Classes, Size, 480, 120, 240,
        "1–3 tiles per 64×64 image, each a 24–40 px square showing one of ten " + Letters + ", not overlapping, on a crop of an " +
        "OpenCV sample photograph; box = the tile, area = its pixels, RLE mask; 10 classes.")
    { Objects = DenseObjects.Glyphs, MinSide = 24, MaxSide = 40, MaxObjects = 3, Tiles = true };

    public static IReadOnlyList<DenseTaskInfo> Tasks => new[] { GarmentsSeg, DigitsDet, GlyphsSeg, GlyphsDet };

    public static DenseTaskInfo Task(string name) => Tasks.FirstOrDefault(t => t.Name == name)
        ?? throw new PeftSharpException("task", $"unknown built-in dense task '{name}' (known: {string.Join(", ", Tasks.Select(t => t.Name))})");

    /// <summary>Writes the task under <paramref name="root"/>/name unless a complete copy of this version is there;
    /// returns its folder. task.json is written last, so an interrupted write is redone.</summary>
    public static string Materialize(string root, DenseTaskInfo info)
    {
        string dir = Path.Combine(root, info.Name);
        string json = TaskJson(info);
        if (File.Exists(Path.Combine(dir, TaskFile)) && File.ReadAllText(Path.Combine(dir, TaskFile)) == json) return dir;
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        var photos = ShippedData.Load(ShippedTasks.PhotosLayout, null);
        var cells = info.Objects switch
        {
            DenseObjects.Garments => ShippedData.Load(ShippedTasks.FashionLayout, null),
            DenseObjects.Digits => ShippedData.Load(ShippedTasks.DigitsLayout, null),
            _ => GlyphCells.Render(Seed),
        };
        foreach (var (split, count) in new[] { ("train", info.Train), ("val", info.Val), ("test", info.Test) })
        {
            bool test = split == "test";
            var pool = cells.Indices(test ? ShippedSubset.Test : ShippedSubset.TrainVal);
            var scenes = new Scene[count];
            Parallel.For(0, count, i => scenes[i] = Compose(info, cells, pool, photos, test, SuiteRng.For(Seed, SuiteRng.Hash(info.Name), SuiteRng.Hash(split), (ulong)i)));
            if (info.Kind == DenseKind.Segmentation) WriteSegmentation(dir, split, scenes, info.ImageSize);
            else WriteCoco(dir, split, scenes, info.ClassNames, info.ImageSize);
        }
        if (info.Kind == DenseKind.Segmentation) File.WriteAllLines(Path.Combine(dir, SegmentationFolder.ClassesFile), info.ClassNames);
        File.WriteAllText(Path.Combine(dir, TaskFile), json);
        return dir;
    }

    static string TaskJson(DenseTaskInfo info) => new JsonObject
    {
        ["name"] = info.Name, ["kind"] = info.Kind == DenseKind.Segmentation ? "segmentation" : "detection",
        ["classes"] = info.ClassNames.Count, ["image_size"] = info.ImageSize, ["train"] = info.Train, ["val"] = info.Val, ["test"] = info.Test,
        ["seed"] = Seed, ["generator_version"] = GeneratorVersion, ["provenance"] = info.Provenance,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";

    /// <summary>One composited image: RGB pixels, the class map (0 = background) and each object's visible mask.</summary>
    sealed record Scene(byte[] Pixels, byte[] ClassMap, List<(int Label, byte[] Mask)> Objects);

    static Scene Compose(DenseTaskInfo info, ShippedSubset cells, int[] pool, ShippedSubset photos, bool test, SuiteRng rng)
    {
        int n = info.ImageSize;
        // Background: a 40–80 px square from one quadrant of a photograph (train: 0 and 3, test: 1 and 2).
        var photo = photos.Cells[rng.Next(photos.Count)];
        int half = ShippedTasks.PhotoSide / 2, quadrant = test ? 1 + rng.Next(2) : 3 * rng.Next(2);
        double side = rng.Range(40, half);
        double x0 = quadrant % 2 * half + rng.Range(0, half - side), y0 = quadrant / 2 * half + rng.Range(0, half - side);
        var pixels = PixelOps.CropResize(photo, ShippedTasks.PhotoSide, ShippedTasks.PhotoSide, 3, x0, y0, side, n, flip: rng.Chance(0.5));
        var classMap = new byte[n * n];
        var owner = new int[n * n];
        Array.Fill(owner, -1);
        int objects = 1 + rng.Next(info.MaxObjects);
        var labels = new List<int>();
        var boxes = new List<(int X, int Y, int S)>();
        for (int o = 0; o < objects; o++)
        {
            int cell = pool[rng.Next(pool.Length)];
            int size = info.MinSide + rng.Next(info.MaxSide - info.MinSide + 1);
            int x = 0, y = 0;
            bool placed = false;
            for (int attempt = 0; attempt < 30 && !placed; attempt++)
            {
                x = rng.Next(n - size + 1);
                y = rng.Next(n - size + 1);
                // Without overlap each object shows whole (a detection box its whole digit); garments may occlude each other.
                placed = info.Overlap || boxes.All(b => x + size <= b.X || b.X + b.S <= x || y + size <= b.Y || b.Y + b.S <= y);
            }
            if (!placed) continue;
            var ink = PixelOps.CropResize(cells.Cells[cell], cells.CellWidth, cells.CellHeight, 1, 0, 0, cells.CellWidth, size);
            var background = new SKColor(pixels[((y + size / 2) * n + x + size / 2) * 3], pixels[((y + size / 2) * n + x + size / 2) * 3 + 1], pixels[((y + size / 2) * n + x + size / 2) * 3 + 2]);
            var colour = PixelOps.Contrasting(background, 0.35, rng);
            var plate = info.Tiles ? PixelOps.Contrasting(colour, 0.4, rng) : colour;
            int index = labels.Count;
            for (int dy = 0; dy < size; dy++)
                for (int dx = 0; dx < size; dx++)
                {
                    int v = ink[dy * size + dx];
                    if (v < 48 && !info.Tiles) continue;
                    int p = (y + dy) * n + x + dx;
                    if (info.Tiles)
                    {
                        // A tile: plate and ink mixed by the ink's coverage, every pixel of the square the object's.
                        double t = v / 255.0;
                        pixels[3 * p] = PixelOps.ClampByte((1 - t) * plate.Red + t * colour.Red);
                        pixels[3 * p + 1] = PixelOps.ClampByte((1 - t) * plate.Green + t * colour.Green);
                        pixels[3 * p + 2] = PixelOps.ClampByte((1 - t) * plate.Blue + t * colour.Blue);
                    }
                    else
                    {
                        double shade = 0.45 + 0.55 * v / 255.0;
                        pixels[3 * p] = PixelOps.ClampByte(colour.Red * shade);
                        pixels[3 * p + 1] = PixelOps.ClampByte(colour.Green * shade);
                        pixels[3 * p + 2] = PixelOps.ClampByte(colour.Blue * shade);
                    }
                    classMap[p] = (byte)(cells.Labels[cell] + 1);
                    owner[p] = index;
                }
            labels.Add(cells.Labels[cell]);
            boxes.Add((x, y, size));
        }
        PixelOps.AddNoise(pixels, rng.Range(0, 6), rng);
        var masks = labels.Select((label, i) =>
        {
            var mask = new byte[n * n];
            for (int p = 0; p < mask.Length; p++) mask[p] = owner[p] == i ? (byte)1 : (byte)0;
            return (label, mask);
        }).Where(m => m.mask.Any(v => v != 0)).ToList();
        return new Scene(pixels, classMap, masks);
    }

    static void WriteSegmentation(string dir, string split, Scene[] scenes, int size)
    {
        string images = Path.Combine(dir, SegmentationFolder.ImagesFolder, split), labels = Path.Combine(dir, SegmentationFolder.LabelsFolder, split);
        Directory.CreateDirectory(images);
        Directory.CreateDirectory(labels);
        Parallel.For(0, scenes.Length, i =>
        {
            File.WriteAllBytes(Path.Combine(images, $"{i:D5}.png"), SuiteImage.Rgb(size, size, scenes[i].Pixels).ToPng());
            File.WriteAllBytes(Path.Combine(labels, $"{i:D5}.png"), new SuiteImage(size, size, true, scenes[i].ClassMap).ToPng());
        });
    }

    static void WriteCoco(string dir, string split, Scene[] scenes, IReadOnlyList<string> classes, int size)
    {
        string images = Path.Combine(dir, split);
        Directory.CreateDirectory(images);
        Directory.CreateDirectory(Path.Combine(dir, "annotations"));
        Parallel.For(0, scenes.Length, i => File.WriteAllBytes(Path.Combine(images, $"{i:D5}.png"), SuiteImage.Rgb(size, size, scenes[i].Pixels).ToPng()));
        var imageList = new JsonArray();
        var annotations = new JsonArray();
        long annotationId = 1;
        for (int i = 0; i < scenes.Length; i++)
        {
            imageList.Add(new JsonObject { ["id"] = i + 1, ["file_name"] = $"{i:D5}.png", ["width"] = size, ["height"] = size });
            foreach (var (label, mask) in scenes[i].Objects)
            {
                int minX = size, minY = size, maxX = -1, maxY = -1, area = 0;
                for (int p = 0; p < mask.Length; p++)
                    if (mask[p] != 0)
                    {
                        int x = p % size, y = p / size;
                        (minX, minY, maxX, maxY) = (Math.Min(minX, x), Math.Min(minY, y), Math.Max(maxX, x), Math.Max(maxY, y));
                        area++;
                    }
                annotations.Add(new JsonObject
                {
                    ["id"] = annotationId++, ["image_id"] = i + 1, ["category_id"] = label + 1, ["iscrowd"] = 0, ["area"] = area,
                    ["bbox"] = new JsonArray(minX, minY, maxX - minX + 1, maxY - minY + 1),
                    ["segmentation"] = new JsonObject
                    {
                        ["size"] = new JsonArray(size, size),
                        ["counts"] = new JsonArray(CocoSegmentation.Encode(mask, size, size).Select(c => (JsonNode)c).ToArray()),
                    },
                });
            }
        }
        var categories = new JsonArray(classes.Select((name, c) => (JsonNode)new JsonObject { ["id"] = c + 1, ["name"] = name }).ToArray());
        var coco = new JsonObject { ["images"] = imageList, ["annotations"] = annotations, ["categories"] = categories };
        File.WriteAllText(CocoDataset.AnnotationFile(dir, split), coco.ToJsonString());
    }
}
