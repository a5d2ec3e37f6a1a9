using System.Security.Cryptography;
using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>
/// The whole of Fashion-MNIST (60,000 training and 10,000 test images, 28×28 grey, 10 classes) as the Debian package
/// dataset-fashion-mnist installs it: four gzipped IDX files. The mini-VTAB suite ships 2,000 of them; the many-shot
/// study reads the files themselves.
/// </summary>
public static class FashionMnist
{
    public const string Package = "dataset-fashion-mnist";
    /// <summary>Where the package puts the files (relative to the file-system root).</summary>
    public const string PackageFolder = "usr/share/datasets/fashion-mnist";
    public static string DefaultFolder => "/" + PackageFolder;

    /// <summary>train images, train labels, test images, test labels.</summary>
    public static readonly IReadOnlyList<string> FileNames =
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

    /// <summary>The four files' paths in <paramref name="folder"/>; a missing one is a <see cref="PeftSharpException"/>
    /// naming it and the package that installs it.</summary>
    public static string[] Files(string folder) => FileNames.Select(name =>
    {
        string path = Path.Combine(folder, name);
        return File.Exists(path) ? path
            : throw new PeftSharpException($"{path} not found: it comes with the Debian package {Package} (apt-get install {Package})");
    }).ToArray();

    /// <summary>The training and test splits, in file order (the files are shuffled, so a prefix is a fixed random sample).</summary>
    public static (IdxDataset Train, IdxDataset Test) Open(string? folder = null)
    {
        var files = Files(folder ?? DefaultFolder);
        return (IdxDataset.Open(files[0], files[1], classNames: ShippedTasks.FashionClasses),
                IdxDataset.Open(files[2], files[3], classNames: ShippedTasks.FashionClasses));
    }

    /// <summary>"sha256:" and the first 16 hex digits of the four files' hash: run keys name the data they trained on,
    /// so another copy of the files (a test's tiny one) never shares a run with the package's.</summary>
    public static string Fingerprint(string? folder = null)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var path in Files(folder ?? DefaultFolder)) sha.AppendData(File.ReadAllBytes(path));
        return "sha256:" + Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }
}
