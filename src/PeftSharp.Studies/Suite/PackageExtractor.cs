using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>
/// Re-extracts the shipped subsets of data/suite from the installed Debian packages. The selection is fixed by
/// <see cref="ExtractionSeed"/> (not by the materialisation seed), so a rebuild reproduces the shipped files.
/// </summary>
internal static class PackageExtractor
{
    public const ulong ExtractionSeed = 20240917;
    const int PerClass = 100; // per class and split (train+val, test)

    const string OpenCvExamples = "usr/share/doc/opencv-doc/examples";
    const string OpenCvPackage = "opencv-doc";

    public static void Build(string dataDir, string packageRoot)
    {
        // Check every input first, so a missing package is reported before anything is written.
        var fashionFiles = FashionMnist.Files(Path.Combine(packageRoot, FashionMnist.PackageFolder));
        string digitsFile = Require(packageRoot, $"{OpenCvExamples}/data/digits.png", OpenCvPackage);
        var photoFiles = ShippedTasks.Photos.Select(p => Require(packageRoot, $"{OpenCvExamples}/{p.File}", OpenCvPackage)).ToArray();

        var (fashion, fashionXray) = ExtractFashion(fashionFiles);
        ShippedData.Save(fashion, dataDir);
        ShippedData.Save(fashionXray, dataDir);
        var (digits, digitsMicroscopy) = ExtractDigits(digitsFile);
        ShippedData.Save(digits, dataDir);
        ShippedData.Save(digitsMicroscopy, dataDir);
        ShippedData.Save(ExtractPhotos(photoFiles), dataDir);
    }

    static string Require(string root, string relative, string package)
    {
        string path = Path.Combine(root, relative);
        if (!File.Exists(path))
            throw new PeftSharpException($"{path} not found: it comes with the Debian package {package} (apt-get install {package})");
        return path;
    }

    /// <summary>Per class, a seeded shuffle of the items; the first 100 go to the first subset, the next 100 to the second.</summary>
    static List<int>[] ShuffledByClass(Func<int, int> label, int count, int classes, string stream)
    {
        var byClass = Enumerable.Range(0, classes).Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < count; i++) byClass[label(i)].Add(i);
        var rng = SuiteRng.For(ExtractionSeed, SuiteRng.Hash(stream));
        foreach (var members in byClass) rng.Shuffle(members);
        return byClass;
    }

    static (ShippedSubset Natural, ShippedSubset Derived) ExtractFashion(string[] files)
    {
        var train = IdxDataset.Open(files[0], files[1]);
        var test = IdxDataset.Open(files[2], files[3]);
        var trainPicks = ShuffledByClass(train.Label, train.Count, 10, "fashion-train");
        var testPicks = ShuffledByClass(test.Label, test.Count, 10, "fashion-t10k");

        ShippedSubset Make(SubsetLayout layout, int block)
        {
            var items = new List<(string Split, IdxDataset Data, string File, int Index)>();
            for (int c = 0; c < 10; c++)
                items.AddRange(trainPicks[c].Skip(block * PerClass).Take(PerClass).Select(i => (ShippedSubset.TrainVal, train, "train", i)));
            for (int c = 0; c < 10; c++)
                items.AddRange(testPicks[c].Skip(block * PerClass).Take(PerClass).Select(i => (ShippedSubset.Test, test, "t10k", i)));
            return new ShippedSubset(layout.Name, layout.CellWidth, layout.CellHeight, true, layout.Columns,
                items.Select(t => t.Split).ToArray(), items.Select(t => t.Data.Label(t.Index)).ToArray(),
                items.Select(t => $"{t.File}#{t.Index}").ToArray(), items.Select(t => GrayCell(t.Data, t.Index)).ToArray());
        }
        return (Make(ShippedTasks.FashionLayout, 0), Make(ShippedTasks.FashionXrayLayout, 1));
    }

    static byte[] GrayCell(IdxDataset data, int index)
    {
        data.TryReadImage(index, out var image, out _);
        return Enumerable.Range(0, image!.Width * image.Height).Select(p => image.Pixels[3 * p]).ToArray();
    }

    /// <summary>digits.png: 50 rows of 100 digits of 20×20; digit d fills rows 5d to 5d + 4.</summary>
    static (ShippedSubset Natural, ShippedSubset Derived) ExtractDigits(string file)
    {
        var sheet = ImageDecoder.Decode(file);
        if (sheet.Width != 2000 || sheet.Height != 1000)
            throw new PeftSharpException($"{file}: {sheet.Width}×{sheet.Height}; expected 2000×1000 (50 rows of 100 20×20 digits)");
        var picks = ShuffledByClass(i => i / 500, 5000, 10, "opencv-digits");

        byte[] Cell(int i)
        {
            int left = i % 100 * 20, top = i / 100 * 20;
            var cell = new byte[400];
            for (int y = 0; y < 20; y++)
                for (int x = 0; x < 20; x++)
                    cell[y * 20 + x] = sheet.Pixels[((top + y) * sheet.Width + left + x) * 3];
            return cell;
        }
        ShippedSubset Make(SubsetLayout layout, int block)
        {
            var items = new List<(string Split, int Label, int Index)>();
            for (int s = 0; s < 2; s++)
                for (int c = 0; c < 10; c++)
                    items.AddRange(picks[c].Skip((2 * block + s) * PerClass).Take(PerClass)
                        .Select(i => (s == 0 ? ShippedSubset.TrainVal : ShippedSubset.Test, c, i)));
            return new ShippedSubset(layout.Name, 20, 20, true, layout.Columns, items.Select(t => t.Split).ToArray(),
                items.Select(t => t.Label).ToArray(), items.Select(t => $"{t.Index}").ToArray(),
                items.Select(t => Cell(t.Index)).ToArray());
        }
        return (Make(ShippedTasks.DigitsLayout, 0), Make(ShippedTasks.DigitsMicroscopyLayout, 1));
    }

    /// <summary>Each photograph's centred square, downscaled to 160×160 with area averaging.</summary>
    static ShippedSubset ExtractPhotos(string[] files)
    {
        var cells = files.Select(file =>
        {
            var image = ImageDecoder.Decode(file);
            int side = Math.Min(image.Width, image.Height);
            if (side < ShippedTasks.PhotoSide)
                throw new PeftSharpException($"{file}: {image.Width}×{image.Height}; expected at least {ShippedTasks.PhotoSide} pixels on the short side");
            return PixelOps.CropResize(image.Pixels, image.Width, image.Height, 3, (image.Width - side) / 2, (image.Height - side) / 2,
                side, ShippedTasks.PhotoSide);
        }).ToArray();
        var layout = ShippedTasks.PhotosLayout;
        return new ShippedSubset(layout.Name, layout.CellWidth, layout.CellHeight, false, layout.Columns,
            files.Select(_ => ShippedSubset.All).ToArray(), Enumerable.Range(0, files.Length).ToArray(),
            ShippedTasks.Photos.Select(p => $"examples/{p.File}").ToArray(), cells);
    }
}
