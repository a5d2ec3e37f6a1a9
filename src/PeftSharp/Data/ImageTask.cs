using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace PeftSharp.Data;

/// <summary>How a folder that holds one sub-folder per class (and no split of its own) is split: each image's split
/// is decided by a seeded hash of its path within its class, so adding images never moves an existing one (a test
/// image never turns into a training image) and every class is split in the same proportions, up to sampling.</summary>
public sealed record SplitRule(double ValFraction = 0.1, double TestFraction = 0.2, int Seed = 0)
{
    public SplitRule Validate()
    {
        if (!(ValFraction >= 0 && ValFraction < 1)) throw new PeftSharpException($"split rule: val_fraction must be in [0, 1) (got {ValFraction.ToString(CultureInfo.InvariantCulture)})");
        if (!(TestFraction > 0 && TestFraction < 1)) throw new PeftSharpException($"split rule: test_fraction must be in (0, 1) (got {TestFraction.ToString(CultureInfo.InvariantCulture)})");
        if (ValFraction + TestFraction >= 1) throw new PeftSharpException($"split rule: val_fraction + test_fraction must be below 1 (got {(ValFraction + TestFraction).ToString(CultureInfo.InvariantCulture)}), or nothing is left to train on");
        return this;
    }

    /// <summary>The rule as it appears in split names and run records: "val=0.1,test=0.2,seed=0".</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"val={ValFraction:R},test={TestFraction:R},seed={Seed}");

    /// <summary>Which split an image falls in: a uniform number in [0, 1) from SHA-256 of the seed, the class name and
    /// the image's path inside its class folder.</summary>
    public string SplitOf(string className, string pathInClass)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{Seed}\n{className}\n{pathInClass.Replace('\\', '/')}"));
        double u = BitConverter.ToUInt64(hash, 0) / 18446744073709551616.0;
        return u < TestFraction ? "test" : u < TestFraction + ValFraction ? "val" : "train";
    }
}

/// <summary>
/// A classification task in a folder, in any of the layouts users have:
/// <list type="bullet">
/// <item>VTAB-1K lists: train800.txt, val200.txt, train800val200.txt, test.txt (+ classes.txt);</item>
/// <item>lists of any size: train.txt and test.txt, optional val.txt (+ classes.txt);</item>
/// <item>split folders: train/, test/ and optional val/, each with one sub-folder of images per class;</item>
/// <item>a class-per-folder tree with no split: split per class by a <see cref="SplitRule"/>.</item>
/// </list>
/// Every layout offers the protocol's four roles: <see cref="Train"/> (search training), <see cref="Val"/> (search
/// selection), <see cref="TrainVal"/> (the final training set) and <see cref="Test"/>, each with the layout's name.
/// </summary>
public sealed class ImageTask
{
    readonly Dictionary<string, ImageDataset> splits;

    ImageTask(string directory, string layout, IReadOnlyList<string>? classNames, int numClasses,
              Dictionary<string, ImageDataset> splits, string train, string? val, string trainVal, string test)
    {
        Directory = directory;
        Layout = layout;
        ClassNames = classNames;
        NumClasses = numClasses;
        this.splits = splits;
        TrainName = train;
        ValName = val;
        TrainValName = trainVal;
        TestName = test;
    }

    public string Directory { get; }
    /// <summary>The folder's name, which names the task in run records.</summary>
    public string Name => Path.GetFileName(Directory);
    /// <summary>"vtab-lists", "lists", "split-folders" or "class-folders (val=…,test=…,seed=…)".</summary>
    public string Layout { get; }
    public int NumClasses { get; }
    public IReadOnlyList<string>? ClassNames { get; }

    public string TrainName { get; }
    /// <summary>Null where the layout has no validation split (lists or folders without val).</summary>
    public string? ValName { get; }
    public string TrainValName { get; }
    public string TestName { get; }
    public IReadOnlyCollection<string> SplitNames => splits.Keys;

    public ImageDataset Train => splits[TrainName];
    public ImageDataset Val => ValName is string v ? splits[v]
        : throw new PeftSharpException($"{Directory}: this task has no validation split (layout {Layout}); add val.txt or a val/ folder, or use a class-per-folder tree");
    public ImageDataset TrainVal => splits[TrainValName];
    public ImageDataset Test => splits[TestName];

    /// <summary>The split called <paramref name="name"/>, one of <see cref="SplitNames"/>.</summary>
    public ImageDataset Split(string name) =>
        splits.TryGetValue(name, out var split) ? split
            : throw new PeftSharpException($"{Directory}: no split '{name}' in this task (layout {Layout}); expected one of {string.Join(", ", splits.Keys)}");

    /// <summary>The class name of <paramref name="label"/>, or the label itself where the task names no classes.</summary>
    public string ClassName(int label) => ClassNames is { } names && label >= 0 && label < names.Count ? names[label] : label.ToString(CultureInfo.InvariantCulture);

    /// <summary>Opens <paramref name="directory"/> in whichever layout it has (see the class summary).</summary>
    public static ImageTask Open(string directory, SplitRule? rule = null, bool skipBad = false)
    {
        string full = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        if (!System.IO.Directory.Exists(full))
            throw new PeftSharpException($"{full}: task folder not found; expected a folder with one sub-folder of images per class, train/ and test/ folders of those, or list files (train.txt, test.txt)");
        if (File.Exists(Path.Combine(full, "train800.txt")) || File.Exists(Path.Combine(full, "train800val200.txt")))
            return FromVtab(VtabTask.Open(full, skipBad));
        if (File.Exists(Path.Combine(full, "train.txt")))
            return FromLists(full, skipBad);
        if (System.IO.Directory.Exists(Path.Combine(full, "train")))
            return FromSplitFolders(full, skipBad);
        return FromClassFolders(full, (rule ?? new SplitRule()).Validate(), skipBad);
    }

    static ImageTask FromVtab(VtabTask task) => new(task.Directory, "vtab-lists", task.ClassNames, task.NumClasses,
        new Dictionary<string, ImageDataset>
        {
            ["train800"] = task.Train800, ["val200"] = task.Val200, ["train800val200"] = task.Train800Val200, ["test"] = task.Test,
        }, "train800", "val200", "train800val200", "test");

    static ImageTask FromLists(string directory, bool skipBad)
    {
        string List(string name) => Path.Combine(directory, name + ".txt");
        var names = new[] { "train", "val", "test" }.Where(n => n != "val" || File.Exists(List(n))).ToList();
        if (!File.Exists(List("test")))
            throw new PeftSharpException($"{List("test")}: list file not found; a task with train.txt needs test.txt too ({ListFile.ExpectedLine} per line)");
        var parsed = names.ToDictionary(n => n, n =>
        {
            var skipped = new List<SkippedEntry>();
            return (Entries: ListFile.Read(List(n), skipBad, skipped), Skipped: skipped);
        });
        string classesPath = Path.Combine(directory, VtabTask.ClassNamesFile);
        IReadOnlyList<string>? classNames = File.Exists(classesPath) ? ListFile.ReadClassNames(classesPath) : null;
        // Without classes.txt the classes are the labels the training lists use: a label seen only in test.txt is an
        // error, not a silently larger head.
        int numClasses = classNames?.Count ?? parsed.Where(p => p.Key != "test").SelectMany(p => p.Value.Entries).Select(e => e.Label).DefaultIfEmpty(-1).Max() + 1;
        var splits = parsed.ToDictionary(p => p.Key, p => (ImageDataset)ListFileDataset.Create(List(p.Key), $"list {List(p.Key)}",
            p.Value.Entries, numClasses, classNames, skipBad, p.Value.Skipped, classNames == null ? "the training lists" : null));
        bool hasVal = splits.ContainsKey("val");
        splits["train+val"] = hasVal ? DatasetView.Concat(splits["train"], splits["val"]) : splits["train"];
        return new ImageTask(directory, "lists", classNames, numClasses, splits, "train", hasVal ? "val" : null, hasVal ? "train+val" : "train", "test");
    }

    static ImageTask FromSplitFolders(string directory, bool skipBad)
    {
        var train = ImageFolderDataset.Open(Path.Combine(directory, "train"), skipBad);
        var splits = new Dictionary<string, ImageDataset> { ["train"] = train };
        foreach (var name in new[] { "val", "test" })
        {
            string folder = Path.Combine(directory, name);
            if (System.IO.Directory.Exists(folder)) splits[name] = ImageFolderDataset.Open(folder, skipBad, train.ClassNames);
            else if (name == "test")
                throw new PeftSharpException($"{folder}: folder not found; a task with a train/ folder needs a test/ folder of the same class sub-folders");
        }
        bool hasVal = splits.ContainsKey("val");
        splits["train+val"] = hasVal ? DatasetView.Concat(train, splits["val"]) : train;
        return new ImageTask(directory, "split-folders", train.ClassNames, train.NumClasses, splits, "train", hasVal ? "val" : null, hasVal ? "train+val" : "train", "test");
    }

    static ImageTask FromClassFolders(string directory, SplitRule rule, bool skipBad)
    {
        var all = ImageFolderDataset.Open(directory, skipBad);
        var byRole = new Dictionary<string, List<int>> { ["train"] = [], ["val"] = [], ["test"] = [] };
        for (int i = 0; i < all.Count; i++)
        {
            string className = all.ClassNames![all.Label(i)];
            string inClass = Path.GetRelativePath(Path.Combine(all.Root, className), all.ImagePath(i));
            byRole[rule.SplitOf(className, inClass)].Add(i);
        }
        for (int c = 0; c < all.NumClasses; c++)
            if (!byRole["train"].Any(i => all.Label(i) == c) && all.Count > 0)
                throw new PeftSharpException($"{Path.Combine(all.Root, all.ClassNames![c])}: class '{all.ClassNames[c]}' has {Enumerable.Range(0, all.Count).Count(i => all.Label(i) == c)} image(s) and none falls in the training split ({rule}); add images to it");
        string suffix = $"({rule})";
        var splits = new Dictionary<string, ImageDataset>
        {
            ["train"] = DatasetView.Select(all, byRole["train"], $"{all.Source} train {suffix}"),
            ["val"] = DatasetView.Select(all, byRole["val"], $"{all.Source} val {suffix}"),
            ["test"] = DatasetView.Select(all, byRole["test"], $"{all.Source} test {suffix}"),
        };
        splits["train+val"] = DatasetView.Concat(splits["train"], splits["val"]);
        bool hasVal = rule.ValFraction > 0;
        // Split names carry the rule, so runs on another split of the same folder never share a record.
        var task = new ImageTask(directory, $"class-folders {suffix}", all.ClassNames, all.NumClasses, splits.ToDictionary(kv => $"{kv.Key}{suffix}", kv => kv.Value),
            $"train{suffix}", hasVal ? $"val{suffix}" : null, hasVal ? $"train+val{suffix}" : $"train{suffix}", $"test{suffix}");
        if (task.Test.Count == 0) throw new PeftSharpException($"{directory}: the split rule ({rule}) puts no image in the test split ({all.Count} images); add images or raise the test fraction");
        return task;
    }

    /// <summary>
    /// What a split holds, for run identities: SHA-256 over every entry's path (relative to the task folder), label and
    /// file size. Adding, removing, relabelling or replacing an image changes it, so a stored run is never reused for
    /// other data; moving the whole folder does not.
    /// </summary>
    public string Fingerprint(string split) => Fingerprint(Split(split), Directory);

    /// <summary>The fingerprint of any dataset, paths shown relative to <paramref name="root"/>.</summary>
    public static string Fingerprint(ImageDataset data, string root)
    {
        var text = new StringBuilder();
        for (int i = 0; i < data.Count; i++)
        {
            string? path = data.EntryPath(i);
            long size = path != null && File.Exists(path) ? new FileInfo(path).Length : -1;
            string shown = path == null ? $"#{i}" : Path.GetRelativePath(root, path).Replace('\\', '/');
            text.Append(shown).Append('\t').Append(data.Label(i)).Append('\t').Append(size).Append('\n');
        }
        return "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }
}
