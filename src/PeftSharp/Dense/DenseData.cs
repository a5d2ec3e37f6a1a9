using PeftSharp.Data;
using static TorchSharp.torch;

namespace PeftSharp.Dense;

/// <summary>One split of a dense task in memory, at the model's input size: images, and per image either the class
/// map (segmentation) or the objects (detection).</summary>
public sealed class DenseSplit
{
    public DenseSplit(DenseKind kind, string name, IReadOnlyList<string> classNames, int size, IReadOnlyList<byte[]> pixels,
                      IReadOnlyList<byte[]>? labels, IReadOnlyList<IReadOnlyList<CocoObject>>? objects)
    {
        Kind = kind;
        Name = name;
        ClassNames = classNames;
        Size = size;
        Pixels = pixels;
        Labels = labels;
        Objects = objects;
    }

    public DenseKind Kind { get; }
    public string Name { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public int Size { get; }
    public IReadOnlyList<byte[]> Pixels { get; }
    public IReadOnlyList<byte[]>? Labels { get; }
    public IReadOnlyList<IReadOnlyList<CocoObject>>? Objects { get; }
    public int Count => Pixels.Count;

    /// <summary>Two splits as one (train + val for the final run), the first's examples first.</summary>
    public DenseSplit Concat(DenseSplit other) => new(Kind, $"{Name}+{other.Name}", ClassNames, Size, Pixels.Concat(other.Pixels).ToList(),
        Labels?.Concat(other.Labels!).ToList(), Objects?.Concat(other.Objects!).ToList());

    /// <summary>The first <paramref name="count"/> examples (null: all).</summary>
    public DenseSplit Take(int? count) => count is int n && n < Count
        ? new(Kind, Name, ClassNames, Size, Pixels.Take(n).ToList(), Labels?.Take(n).ToList(), Objects?.Take(n).ToList())
        : this;

    /// <summary>Images [B, 3, S, S] as float32 in [0, 1], normalised.</summary>
    public Tensor Images(IReadOnlyList<int> indices, Normalization normalization)
    {
        int s = Size, plane = s * s;
        var data = new float[indices.Count * 3 * plane];
        for (int b = 0; b < indices.Count; b++)
        {
            var px = Pixels[indices[b]];
            for (int c = 0; c < 3; c++)
            {
                float mean = normalization.Mean[c], std = normalization.Std[c];
                int offset = (b * 3 + c) * plane;
                for (int p = 0; p < plane; p++) data[offset + p] = (px[3 * p + c] / 255f - mean) / std;
            }
        }
        return tensor(data, new long[] { indices.Count, 3, s, s });
    }

    /// <summary>Class maps [B, S, S] as int64 (255 = ignore).</summary>
    public Tensor ClassMaps(IReadOnlyList<int> indices)
    {
        int plane = Size * Size;
        var data = new long[indices.Count * plane];
        for (int b = 0; b < indices.Count; b++)
        {
            var l = Labels![indices[b]];
            for (int p = 0; p < plane; p++) data[b * plane + p] = l[p];
        }
        return tensor(data, new long[] { indices.Count, Size, Size });
    }
}

/// <summary>A dense task folder: the mask-folder layout (segmentation) or COCO's (detection), found by its files.</summary>
public sealed class DenseTask
{
    DenseTask(string directory, DenseKind kind)
    {
        Directory = directory;
        Kind = kind;
    }

    public string Directory { get; }
    public DenseKind Kind { get; }
    public string Name => Path.GetFileName(Path.TrimEndingDirectorySeparator(Directory));
    public string Family => Kind == DenseKind.Segmentation ? "dense-seg" : "dense-det";

    public static DenseTask Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory)) throw new PeftSharpException("task", $"{directory}: dense task folder not found");
        if (SegmentationFolder.Looks(directory)) return new DenseTask(directory, DenseKind.Segmentation);
        if (CocoDataset.Looks(directory)) return new DenseTask(directory, DenseKind.Detection);
        throw new PeftSharpException("task", $"{directory}: neither a segmentation folder ({SegmentationFolder.ClassesFile}, images/<split>/, annotations/<split>/*.png) nor a COCO folder (annotations/instances_<split>.json, <split>/)");
    }

    /// <summary>Reads and checks one split at the model's input size.</summary>
    public DenseSplit Split(string split, int size)
    {
        if (Kind == DenseKind.Segmentation)
        {
            var s = SegmentationFolder.Open(Directory, split, size);
            return new DenseSplit(Kind, split, s.ClassNames, size, s.Pixels, s.Labels, null);
        }
        var c = CocoDataset.Open(Directory, split, size);
        return new DenseSplit(Kind, split, c.ClassNames, size, c.Images.Select(i => i.Pixels).ToList(), null, c.Images.Select(i => i.Objects).ToList());
    }

    /// <summary>"sha256:…" of the split's annotation files and images, so a run key names the data it trained on.</summary>
    public string Fingerprint(params string[] splits)
    {
        var files = new List<string>();
        foreach (var split in splits)
        {
            if (Kind == DenseKind.Segmentation)
            {
                files.Add(Path.Combine(Directory, SegmentationFolder.ClassesFile));
                files.AddRange(System.IO.Directory.EnumerateFiles(Path.Combine(Directory, SegmentationFolder.ImagesFolder, split)));
                files.AddRange(System.IO.Directory.EnumerateFiles(Path.Combine(Directory, SegmentationFolder.LabelsFolder, split)));
            }
            else
            {
                files.Add(CocoDataset.AnnotationFile(Directory, split));
                files.AddRange(System.IO.Directory.EnumerateFiles(Path.Combine(Directory, split)));
            }
        }
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var f in files.Where(File.Exists).Order(StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(Directory, f)));
            sha.AppendData(File.ReadAllBytes(f));
        }
        return "sha256:" + Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }
}
