namespace PeftSharp.Video;

/// <summary>A video task on disk: list files of labelled clips (train, test, optionally val), the folder their clip
/// paths are relative to, and the class names. The built-in tasks are folders with train.txt / val.txt / test.txt,
/// classes.txt and the rawframes under frames/ (<see cref="Open"/> reads any folder laid out so);
/// <see cref="FromLists"/> takes a user's list files wherever they are.</summary>
public sealed record VideoTask(string Name, string Directory, IReadOnlyList<string> Classes, int FramesPerClip, string Description)
{
    public int NumClasses => Classes.Count;
    public string TrainList { get; init; } = Path.Combine(Directory, "train.txt");
    public string TestList { get; init; } = Path.Combine(Directory, "test.txt");
    /// <summary>The list that selects hyperparameters; a task without one has no val metrics.</summary>
    public string? ValList { get; init; } = Path.Combine(Directory, "val.txt");
    public string FramesRoot { get; init; } = Path.Combine(Directory, "frames");
    public bool HasVal => ValList is not null && File.Exists(ValList);

    public ClipDataset Split(string split, ClipSampler sampler, ClipTransform transform) =>
        ClipDataset.FromList(ListOf(split), FramesRoot, NumClasses, sampler, transform);

    public string ListOf(string split) => split switch
    {
        "train" => TrainList,
        "test" => TestList,
        "val" when HasVal => ValList!,
        _ => throw new PeftSharpException("split", $"{Directory}: no split '{split}' ({(HasVal ? "train, val, test" : "train, test")})"),
    };

    /// <summary>A task folder: train.txt and test.txt (val.txt optional) listing clips under frames/ (or under the
    /// folder itself when it has no frames/), the class names one per line in classes.txt.</summary>
    public static VideoTask Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory)) throw new PeftSharpException($"{directory}: video task folder not found");
        string classesFile = Path.Combine(directory, "classes.txt");
        if (!File.Exists(classesFile))
            throw new PeftSharpException($"{classesFile}: not found; a video task folder has classes.txt (one class name per line), train.txt and test.txt");
        var classes = ReadClassNames(classesFile);
        string name = Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar));
        string frames = Path.Combine(directory, "frames");
        var task = new VideoTask(name, directory, classes, 0, "") { FramesRoot = System.IO.Directory.Exists(frames) ? frames : directory };
        foreach (var list in new[] { task.TrainList, task.TestList })
            if (!File.Exists(list)) throw new PeftSharpException($"{list}: not found; a video task folder has train.txt and test.txt clip lists");
        return task;
    }

    /// <summary>A task from a user's list files (paths in them relative to <paramref name="root"/>); class names from
    /// <paramref name="classNames"/>, or "0".."N-1".</summary>
    public static VideoTask FromLists(string trainList, string? testList, string? valList, string root, IReadOnlyList<string> classNames)
    {
        foreach (var list in new[] { trainList, testList, valList })
            if (list is not null && !File.Exists(list)) throw new PeftSharpException($"{list}: list file not found");
        if (!System.IO.Directory.Exists(root)) throw new PeftSharpException($"{root}: clip root folder not found");
        string name = Path.GetFileNameWithoutExtension(trainList);
        return new VideoTask(name, Path.GetDirectoryName(Path.GetFullPath(trainList))!, classNames, 0, "")
        {
            TrainList = trainList, TestList = testList ?? trainList, ValList = valList, FramesRoot = root,
        };
    }

    /// <summary>Class names one per line (blank lines skipped); duplicates are an error.</summary>
    public static IReadOnlyList<string> ReadClassNames(string file)
    {
        if (!File.Exists(file)) throw new PeftSharpException($"{file}: class names file not found");
        var names = File.ReadAllLines(file).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        if (names.Count == 0) throw new PeftSharpException($"{file}: no class names (expected one per line)");
        var duplicate = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new PeftSharpException($"{file}: class name '{duplicate.Key}' appears twice");
        return names;
    }
}
