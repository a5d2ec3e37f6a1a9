using PeftSharp.Data;
using PeftSharp.Suite;

namespace PeftSharp.Tests.Suite;

[Collection(SuiteCollection.Name)]
public class ShippedDataTests(SuiteFixture suite)
{
    const string FashionPackageDir = PackageFactAttribute.FashionMnistDir;

    /// <summary>The cells of a shipped sheet (gray, one byte per pixel) with their table rows.</summary>
    static List<(byte[] Pixels, string Split, int Label, string Source)> ReadSheet(string name, int cell, int columns, string? dir = null)
    {
        dir ??= SuiteFiles.ShippedDataDir;
        var sheet = ImageDecoder.Decode(Path.Combine(dir, name + ".png"));
        var rows = File.ReadAllLines(Path.Combine(dir, name + ".tsv")).Skip(1).Where(l => l.Length > 0).Select(l => l.Split('\t')).ToList();
        return rows.Select((row, i) =>
        {
            var pixels = new byte[cell * cell];
            int left = i % columns * cell, top = i / columns * cell;
            for (int y = 0; y < cell; y++)
                for (int x = 0; x < cell; x++)
                    pixels[y * cell + x] = sheet.Pixels[((top + y) * sheet.Width + left + x) * 3];
            return (pixels, row[0], int.Parse(row[1]), row[2]);
        }).ToList();
    }

    static string Key(byte[] pixels) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(pixels));

    [Theory]
    [InlineData("fashion-mnist", 28)]
    [InlineData("digits", 20)]
    public void Stored_tasks_hold_exactly_the_shipped_images_with_their_labels(string name, int cell)
    {
        var shipped = ReadSheet(name, cell, 50);
        Assert.Equal(2000, shipped.Count);
        Assert.Equal(1000, shipped.Count(s => s.Split == "trainval"));
        Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(200, shipped.Count(s => s.Label == c)));
        var byKey = shipped.GroupBy(s => Key(s.Pixels)).ToDictionary(g => g.Key, g => g.ToList());

        string dir = suite.Task(name).Directory;
        var seen = new List<string>();
        foreach (var (list, split) in new[] { ("train800val200", "trainval"), ("test", "test") })
            foreach (string line in File.ReadAllLines(Path.Combine(dir, list + ".txt")))
            {
                var parts = line.Split(' ');
                var image = ImageDecoder.Decode(Path.Combine(dir, parts[0]));
                var gray = Enumerable.Range(0, image.Width * image.Height).Select(p => image.Pixels[3 * p]).ToArray();
                string key = Key(gray);
                Assert.True(byKey.TryGetValue(key, out var matches), $"{parts[0]} is not one of the shipped images");
                Assert.Contains(matches!, m => m.Label == int.Parse(parts[1]) && m.Split == split);
                seen.Add(key);
            }
        Assert.Equal(shipped.Select(s => Key(s.Pixels)).Order(), seen.Order());
    }

    [PackageFact("dataset-fashion-mnist")]   // skipped, saying so, without the package; the embedded copy is checked above
    public void Shipped_fashion_images_are_the_package_images_their_table_names()
    {
        var train = IdxDataset.Open(Path.Combine(FashionPackageDir, "train-images-idx3-ubyte.gz"), Path.Combine(FashionPackageDir, "train-labels-idx1-ubyte.gz"));
        var test = IdxDataset.Open(Path.Combine(FashionPackageDir, "t10k-images-idx3-ubyte.gz"), Path.Combine(FashionPackageDir, "t10k-labels-idx1-ubyte.gz"));
        foreach (var (pixels, _, label, source) in ReadSheet("fashion-mnist", 28, 50).Where((_, i) => i % 97 == 0))
        {
            var (file, index) = (source.Split('#')[0], int.Parse(source.Split('#')[1]));
            var data = file == "train" ? train : test;
            data.TryReadImage(index, out var image, out _);
            Assert.Equal(label, data.Label(index));
            Assert.Equal(pixels, Enumerable.Range(0, 784).Select(p => image!.Pixels[3 * p]));
        }
    }

    [PackageFact("opencv-doc", "dataset-fashion-mnist")]
    public void Rebuilding_from_the_packages_reproduces_the_shipped_files()
    {
        string rebuilt = TestFiles.TempDir("peftsharp-suite-build");
        try
        {
            MiniVtab.BuildFromPackages(rebuilt);
            foreach (string file in Directory.GetFiles(SuiteFiles.ShippedDataDir).Where(f => !f.EndsWith(".md")))
            {
                string copy = Path.Combine(rebuilt, Path.GetFileName(file));
                if (file.EndsWith(".tsv")) Assert.Equal(File.ReadAllText(file), File.ReadAllText(copy));
                else Assert.Equal(ImageDecoder.Decode(file).Pixels, ImageDecoder.Decode(copy).Pixels);
            }
        }
        finally { Directory.Delete(rebuilt, recursive: true); }
    }

    [Fact]
    public void Building_without_the_packages_names_the_missing_file_and_package()
    {
        string emptyRoot = TestFiles.TempDir("peftsharp-no-packages");
        try
        {
            var error = Assert.Throws<PeftSharpException>(() => MiniVtab.BuildFromPackages(Path.Combine(emptyRoot, "out"), emptyRoot));
            Assert.Contains("dataset-fashion-mnist", error.Message);
            Assert.Contains("train-images-idx3-ubyte.gz", error.Message);
            Assert.False(Directory.Exists(Path.Combine(emptyRoot, "out")));
        }
        finally { Directory.Delete(emptyRoot, recursive: true); }
    }

    [Fact]
    public void Materialising_from_a_data_folder_matches_the_embedded_copy()
    {
        string root = TestFiles.TempDir("peftsharp-suite-dir");
        try
        {
            var task = MiniVtab.Materialize(root, MiniVtab.DefaultSeed, ["digits"], SuiteFiles.ShippedDataDir).Single();
            string embedded = suite.Task("digits").Directory;
            Assert.Equal(File.ReadAllText(Path.Combine(embedded, "test.txt")), File.ReadAllText(Path.Combine(task.Directory, "test.txt")));
            Assert.Equal(File.ReadAllBytes(Path.Combine(embedded, "test", "00042.png")), File.ReadAllBytes(Path.Combine(task.Directory, "test", "00042.png")));

            var missing = Assert.Throws<PeftSharpException>(() => MiniVtab.Materialize(Path.Combine(root, "b"), 1, ["fashion-mnist"], root));
            Assert.Contains("fashion-mnist.png", missing.Message);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}

/// <summary>A fact that reads Debian packages' files: skipped, naming the missing package and file, when one is not
/// installed (a plain early return would report a pass that checked nothing); with the packages installed it runs.</summary>
public sealed class PackageFactAttribute : FactAttribute
{
    public const string FashionMnistDir = "/usr/share/datasets/fashion-mnist";

    /// <summary>The file whose presence says each package is installed.</summary>
    static readonly Dictionary<string, string> Marker = new()
    {
        ["dataset-fashion-mnist"] = Path.Combine(FashionMnistDir, "train-images-idx3-ubyte.gz"),
        ["opencv-doc"] = "/usr/share/doc/opencv-doc/examples/data/digits.png",
    };

    public PackageFactAttribute(params string[] packages)
    {
        var missing = packages.Where(p => !File.Exists(Marker[p])).Select(p => $"{p} ({Marker[p]} not found)").ToList();
        if (missing.Count > 0) Skip = $"needs the Debian package(s) {string.Join(", ", missing)}; scripts/install-fashion-mnist.sh installs dataset-fashion-mnist, apt-get install opencv-doc the other";
    }
}
