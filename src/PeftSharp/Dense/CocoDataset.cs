using System.Text.Json;

namespace PeftSharp.Dense;

/// <summary>A COCO category; <see cref="Label"/> is its index among the file's categories sorted by id (the head's class).</summary>
public sealed record CocoCategory(int Id, string Name, int Label);

/// <summary>One object: its box [x, y, w, h] in the model's input pixels (scaled from the file's), COCO area (mask
/// area where the file gives one, scaled alike), crowd flag and its instance mask's source where present.</summary>
public sealed record CocoObject(long Id, int Label, double X, double Y, double W, double H, double Area, bool IsCrowd, CocoSegmentation? Segmentation);

/// <summary>An instance mask as COCO stores it: polygons (x0, y0, x1, y1, …) or run-length counts (column-major, first
/// run background) in the file's pixel grid.</summary>
public sealed record CocoSegmentation(IReadOnlyList<double[]>? Polygons, int[]? Counts, int Height, int Width)
{
    /// <summary>The mask as Height×Width bytes (1 = object), row-major. Polygons are filled at pixel centres
    /// (even–odd rule); pycocotools rasterises them at 5× and can differ by a pixel along the outline.</summary>
    public byte[] Decode()
    {
        var mask = new byte[Height * Width];
        if (Counts != null)
        {
            int at = 0;
            for (int r = 0; r < Counts.Length; r++)
            {
                for (int k = 0; k < Counts[r] && at < mask.Length; k++, at++)
                    if (r % 2 == 1) mask[at % Height * Width + at / Height] = 1;
            }
            return mask;
        }
        foreach (var poly in Polygons!)
            for (int y = 0; y < Height; y++)
                for (int x = 0; x < Width; x++)
                    if (Inside(poly, x + 0.5, y + 0.5)) mask[y * Width + x] ^= 1;
        return mask;
    }

    static bool Inside(double[] p, double x, double y)
    {
        bool inside = false;
        for (int i = 0, j = p.Length / 2 - 1; i < p.Length / 2; j = i++)
        {
            double xi = p[2 * i], yi = p[2 * i + 1], xj = p[2 * j], yj = p[2 * j + 1];
            if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
        }
        return inside;
    }

    /// <summary>Column-major run lengths of a row-major 0/1 mask (COCO's uncompressed RLE).</summary>
    public static int[] Encode(byte[] mask, int height, int width)
    {
        var counts = new List<int>();
        byte current = 0;
        int run = 0;
        for (int x = 0; x < width; x++)
            for (int y = 0; y < height; y++)
            {
                byte v = mask[y * width + x] != 0 ? (byte)1 : (byte)0;
                if (v != current) { counts.Add(run); run = 0; current = v; }
                run++;
            }
        counts.Add(run);
        return counts.ToArray();
    }

    /// <summary>pycocotools' compressed RLE string (rleFrString): 5-bit groups, sign-extended, differences from the
    /// count two back after the second.</summary>
    public static int[] DecodeCompressed(string s, string where)
    {
        var counts = new List<int>();
        int p = 0;
        while (p < s.Length)
        {
            long x = 0;
            int k = 0;
            bool more = true;
            while (more)
            {
                if (p >= s.Length) throw new PeftSharpException($"{where}: compressed RLE ends inside a count");
                int c = s[p] - 48;
                if (c < 0 || c > 63) throw new PeftSharpException($"{where}: character '{s[p]}' is not compressed RLE");
                x |= (long)(c & 0x1f) << (5 * k);
                more = (c & 0x20) != 0;
                p++;
                k++;
                if (!more && (c & 0x10) != 0) x |= -1L << (5 * k);
            }
            if (counts.Count > 2) x += counts[^2];
            counts.Add(checked((int)x));
        }
        return counts.ToArray();
    }
}

/// <summary>One image of a COCO split with its objects, resized to the model's square input.</summary>
public sealed record CocoImage(int Id, string FileName, int Width, int Height, byte[] Pixels, IReadOnlyList<CocoObject> Objects);

/// <summary>
/// A detection split in COCO's layout: <c>annotations/instances_&lt;split&gt;.json</c> (images, categories,
/// annotations with bbox [x, y, w, h], area, iscrowd and segmentation as polygons or RLE) and the images under
/// <c>&lt;split&gt;/</c>. Opening checks everything before any training: a box outside its image or with a negative
/// size, an unknown category or image id, a listed image that is missing, a mask of the wrong size is one error
/// naming the file and the field.
/// </summary>
public sealed class CocoDataset
{
    const double Slack = 1e-3;   // boxes written from float masks may overshoot the border by rounding

    CocoDataset(string root, string split, string jsonPath, IReadOnlyList<CocoCategory> categories, IReadOnlyList<CocoImage> images, int size)
    {
        Root = root;
        Split = split;
        JsonPath = jsonPath;
        Categories = categories;
        Images = images;
        Size = size;
    }

    public string Root { get; }
    public string Split { get; }
    public string JsonPath { get; }
    public IReadOnlyList<CocoCategory> Categories { get; }
    public IReadOnlyList<string> ClassNames => Categories.Select(c => c.Name).ToList();
    public int NumClasses => Categories.Count;
    public IReadOnlyList<CocoImage> Images { get; }
    public int Size { get; }
    public int Count => Images.Count;

    public static string AnnotationFile(string root, string split) => Path.Combine(root, "annotations", $"instances_{split}.json");

    public static bool Looks(string root) =>
        Directory.Exists(Path.Combine(root, "annotations")) && Directory.EnumerateFiles(Path.Combine(root, "annotations"), "instances_*.json").Any();

    public static CocoDataset Open(string root, string split, int size)
    {
        string json = AnnotationFile(root, split);
        if (!File.Exists(json)) throw new PeftSharpException($"{json}: COCO annotation file of split '{split}' not found");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(json)); }
        catch (JsonException e) { throw new PeftSharpException($"{json}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        using (doc)
        {
            var top = doc.RootElement;
            if (top.ValueKind != JsonValueKind.Object) throw new PeftSharpException($"{json}: expected a JSON object with images, annotations and categories");
            var categories = ReadCategories(Array(top, "categories", json), json);
            var byCategory = categories.ToDictionary(c => c.Id);
            var imageEntries = new List<(int Id, string File, int W, int H)>();
            var ids = new HashSet<int>();
            int index = 0;
            foreach (var e in Array(top, "images", json).EnumerateArray())
            {
                string f = $"{json}: images[{index}]";
                int id = Int(e, "id", f), w = Int(e, "width", f), h = Int(e, "height", f);
                string file = Str(e, "file_name", f);
                if (w <= 0 || h <= 0) throw new PeftSharpException($"{f}.width/height: expected positive sizes, got {w}x{h}");
                if (!ids.Add(id)) throw new PeftSharpException($"{f}.id: image id {id} appears twice");
                imageEntries.Add((id, file, w, h));
                index++;
            }
            if (imageEntries.Count == 0) throw new PeftSharpException($"{json}: images: the split lists no image");
            var sizes = imageEntries.ToDictionary(i => i.Id, i => (i.W, i.H));
            var objects = imageEntries.ToDictionary(i => i.Id, _ => new List<CocoObject>());
            index = 0;
            foreach (var a in Array(top, "annotations", json).EnumerateArray())
            {
                string f = $"{json}: annotations[{index++}]";
                int imageId = Int(a, "image_id", f), categoryId = Int(a, "category_id", f);
                if (!sizes.TryGetValue(imageId, out var wh)) throw new PeftSharpException($"{f}.image_id: no image with id {imageId} in images");
                if (!byCategory.TryGetValue(categoryId, out var category))
                    throw new PeftSharpException($"{f}.category_id: unknown category id {categoryId} (categories: {string.Join(", ", categories.Select(c => c.Id))})");
                var box = Numbers(a, "bbox", f);
                if (box.Length != 4) throw new PeftSharpException($"{f}.bbox: expected [x, y, width, height], got {box.Length} numbers");
                if (box[2] < 0 || box[3] < 0) throw new PeftSharpException($"{f}.bbox: negative size {box[2]}x{box[3]}");
                if (box[0] < -Slack || box[1] < -Slack || box[0] + box[2] > wh.W + Slack || box[1] + box[3] > wh.H + Slack)
                    throw new PeftSharpException($"{f}.bbox: [{string.Join(", ", box)}] lies outside its {wh.W}x{wh.H} image");
                bool crowd = a.TryGetProperty("iscrowd", out var c) && c.ValueKind == JsonValueKind.Number && c.GetInt32() != 0;
                var segmentation = ReadSegmentation(a, f, wh.H, wh.W);
                double area = a.TryGetProperty("area", out var ar) && ar.ValueKind == JsonValueKind.Number ? ar.GetDouble() : box[2] * box[3];
                double sx = (double)size / wh.W, sy = (double)size / wh.H;
                long id = a.TryGetProperty("id", out var idp) && idp.ValueKind == JsonValueKind.Number ? idp.GetInt64() : index;
                objects[imageId].Add(new CocoObject(id, category.Label, box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy, area * sx * sy, crowd, segmentation));
            }
            var images = new CocoImage[imageEntries.Count];
            string imageDir = Path.Combine(root, split);
            var errors = new string?[images.Length];
            Parallel.For(0, images.Length, i =>
            {
                var (id, file, w, h) = imageEntries[i];
                try
                {
                    var image = DenseImages.Decode(Path.Combine(imageDir, file), $"{json}: images[{i}].file_name");
                    if (image.Width != w || image.Height != h)
                        throw new PeftSharpException($"{json}: images[{i}].width/height: {w}x{h}, but {file} is {image.Width}x{image.Height}");
                    images[i] = new CocoImage(id, file, w, h, DenseImages.Resize(image, size), objects[id]);
                }
                catch (PeftSharpException e) { errors[i] = e.Message; }
            });
            if (errors.FirstOrDefault(e => e != null) is string first) throw new PeftSharpException(first);
            return new CocoDataset(root, split, json, categories, images, size);
        }
    }

    static List<CocoCategory> ReadCategories(JsonElement array, string json)
    {
        var list = new List<(int Id, string Name)>();
        int index = 0;
        foreach (var e in array.EnumerateArray())
        {
            string f = $"{json}: categories[{index++}]";
            list.Add((Int(e, "id", f), Str(e, "name", f)));
        }
        if (list.Count == 0) throw new PeftSharpException($"{json}: categories: no category");
        if (list.Select(c => c.Id).Distinct().Count() != list.Count) throw new PeftSharpException($"{json}: categories: a category id appears twice");
        return list.OrderBy(c => c.Id).Select((c, i) => new CocoCategory(c.Id, c.Name, i)).ToList();
    }

    static CocoSegmentation? ReadSegmentation(JsonElement a, string f, int height, int width)
    {
        if (!a.TryGetProperty("segmentation", out var s) || s.ValueKind == JsonValueKind.Null) return null;
        if (s.ValueKind == JsonValueKind.Array)
        {
            var polygons = new List<double[]>();
            int i = 0;
            foreach (var p in s.EnumerateArray())
            {
                if (p.ValueKind != JsonValueKind.Array) throw new PeftSharpException($"{f}.segmentation[{i}]: expected a polygon [x0, y0, x1, y1, …]");
                var xy = p.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number ? v.GetDouble()
                    : throw new PeftSharpException($"{f}.segmentation[{i}]: expected numbers")).ToArray();
                if (xy.Length < 6 || xy.Length % 2 != 0)
                    throw new PeftSharpException($"{f}.segmentation[{i}]: a polygon needs an even number (at least 6) of coordinates, got {xy.Length}");
                polygons.Add(xy);
                i++;
            }
            return polygons.Count == 0 ? null : new CocoSegmentation(polygons, null, height, width);
        }
        if (s.ValueKind != JsonValueKind.Object) throw new PeftSharpException($"{f}.segmentation: expected polygons or an RLE object");
        var shape = Numbers(s, "size", f + ".segmentation");
        if (shape.Length != 2 || shape[0] != height || shape[1] != width)
            throw new PeftSharpException($"{f}.segmentation.size: [{string.Join(", ", shape)}], but its image is {height} high and {width} wide (expected [{height}, {width}])");
        if (!s.TryGetProperty("counts", out var counts)) throw new PeftSharpException($"{f}.segmentation.counts: missing");
        int[] runs = counts.ValueKind switch
        {
            JsonValueKind.String => CocoSegmentation.DecodeCompressed(counts.GetString()!, $"{f}.segmentation.counts"),
            JsonValueKind.Array => counts.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number && v.GetInt64() >= 0 ? (int)v.GetInt64()
                : throw new PeftSharpException($"{f}.segmentation.counts: expected non-negative run lengths")).ToArray(),
            _ => throw new PeftSharpException($"{f}.segmentation.counts: expected a list of run lengths or a compressed RLE string"),
        };
        long total = runs.Sum(r => (long)r);
        if (total != (long)height * width)
            throw new PeftSharpException($"{f}.segmentation.counts: runs cover {total} pixels, the {width}x{height} image has {(long)width * height}");
        return new CocoSegmentation(null, runs, height, width);
    }

    static JsonElement Array(JsonElement o, string name, string json) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v
            : throw new PeftSharpException($"{json}: {name}: expected an array");

    static int Int(JsonElement o, string name, string f) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i
            : throw new PeftSharpException($"{f}.{name}: expected an integer");

    static string Str(JsonElement o, string name, string f) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new PeftSharpException($"{f}.{name}: expected a string");

    static double[] Numbers(JsonElement o, string name, string f) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && double.IsFinite(x.GetDouble()) ? x.GetDouble()
                : throw new PeftSharpException($"{f}.{name}: expected finite numbers")).ToArray()
            : throw new PeftSharpException($"{f}.{name}: expected an array of numbers");
}
