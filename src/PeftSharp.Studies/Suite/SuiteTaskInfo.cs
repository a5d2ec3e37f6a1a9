using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>The three VTAB groups.</summary>
public enum TaskGroup
{
    Natural,
    Specialized,
    Structured,
}

/// <summary>
/// One mini-VTAB task: its folder name, VTAB group, class names, stored image size, test-split size, where its
/// pixels come from and under which licence.
/// </summary>
public sealed record SuiteTaskInfo(
    string Name,
    TaskGroup Group,
    IReadOnlyList<string> ClassNames,
    int ImageWidth,
    int ImageHeight,
    bool Grayscale,
    int TestCount,
    string Provenance,
    string Licence)
{
    public int NumClasses => ClassNames.Count;
    /// <summary>True when the task is rendered at run time; false when it is cut from the data shipped in data/suite.</summary>
    public bool Procedural => Group == TaskGroup.Structured;
    public string GroupName => Group.ToString().ToLowerInvariant();
}

/// <summary>A task folder written by <see cref="MiniVtab.Materialize"/>.</summary>
public sealed record MaterializedTask(string Name, TaskGroup Group, string Directory, bool Reused);

/// <summary>An image as the suite stores it: one channel (gray) or three (RGB), rows top to bottom.</summary>
internal readonly record struct SuiteImage(int Width, int Height, bool Gray, byte[] Pixels)
{
    public static SuiteImage Rgb(int width, int height, byte[] pixels) => new(width, height, false, pixels);
    public static SuiteImage GrayImage(int width, int height, byte[] pixels) => new(width, height, true, pixels);

    public byte[] ToPng() => Png.Encode(Width, Height, Gray, Pixels);
}
