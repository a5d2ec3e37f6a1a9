using PeftSharp.Data;
using System.Diagnostics;

namespace PeftSharp.Suite;

/// <summary>
/// The mini-VTAB suite: ten small tasks in VTAB-1K's three groups, each written as a VTAB-1K task folder (800 train,
/// 200 val, 1000 test PNGs, the four list files, classes.txt and task.json) that <see cref="Data.VtabTask.Open"/> reads.
/// Natural and specialized tasks are cut from real images shipped in data/suite (embedded in this library);
/// structured tasks are rendered at run time. Everything is fixed by the seed: the same seed gives the same lists
/// and, with the same SkiaSharp native build on the same machine, byte-identical PNGs.
/// </summary>
public static class MiniVtab
{
    /// <summary>The default seed, as in the reference protocol's single run (seed 42).</summary>
    public const int DefaultSeed = 42;

    /// <summary>Bumped whenever a generator changes its output, so older materialised folders are rewritten.</summary>
    public const int GeneratorVersion = 1;

    sealed record TaskDefinition(SuiteTaskInfo Info, Func<ulong, string?, TaskPlan> Plan);

    static readonly TaskDefinition[] Definitions =
    [
        Shipped(ShippedTasks.FashionInfo, ShippedTasks.FashionLayout, (info, subset, seed) => ShippedTasks.AsStored(info, subset, seed)),
        Shipped(ShippedTasks.DigitsInfo, ShippedTasks.DigitsLayout, (info, subset, seed) => ShippedTasks.AsStored(info, subset, seed)),
        Shipped(ShippedTasks.PhotoPatchesInfo, ShippedTasks.PhotosLayout, ShippedTasks.PhotoPatches),
        Shipped(ShippedTasks.FashionXrayInfo, ShippedTasks.FashionXrayLayout,
            (info, subset, seed) => ShippedTasks.FromSubset(info, subset, seed, ShippedTasks.XRay)),
        Shipped(ShippedTasks.DigitsMicroscopyInfo, ShippedTasks.DigitsMicroscopyLayout,
            (info, subset, seed) => ShippedTasks.FromSubset(info, subset, seed, ShippedTasks.Microscopy)),
        Rendered(ClevrScenes.CountInfo, ClevrScenes.RenderCount),
        Rendered(ClevrScenes.DistanceInfo, ClevrScenes.RenderDistance),
        Rendered(SpriteScenes.LocationInfo, SpriteScenes.RenderLocation),
        Rendered(SpriteScenes.OrientationInfo, SpriteScenes.RenderOrientation),
        Rendered(NorbScenes.AzimuthInfo, NorbScenes.RenderAzimuth),
    ];

    static TaskDefinition Shipped(SuiteTaskInfo info, SubsetLayout layout, Func<SuiteTaskInfo, ShippedSubset, ulong, TaskPlan> plan) =>
        new(info, (seed, dataDir) => plan(info, ShippedData.Load(layout, dataDir), seed));

    static TaskDefinition Rendered(SuiteTaskInfo info, Func<RenderContext, SuiteRng, int, SuiteImage> render) =>
        new(info, (seed, _) => Plans.Procedural(info, seed, render));

    /// <summary>All tasks: name, group, class names, stored image size, test size, provenance and licence.</summary>
    public static IReadOnlyList<SuiteTaskInfo> Tasks { get; } = Definitions.Select(d => d.Info).ToArray();

    /// <summary>The task called <paramref name="name"/>.</summary>
    public static SuiteTaskInfo Task(string name) =>
        Tasks.FirstOrDefault(t => t.Name == name)
        ?? throw new PeftSharpException($"unknown mini-VTAB task '{name}'; expected one of {string.Join(", ", Tasks.Select(t => t.Name))}");

    /// <summary>
    /// Writes every task (or only <paramref name="taskNames"/>) into outputDir/&lt;task name&gt; in the VTAB-1K layout and
    /// returns the folders in suite order. A folder that is already complete with a matching task.json is left as it
    /// is; any other folder of that name is replaced. <paramref name="shippedDataDir"/> reads the shipped subsets
    /// from a data/suite folder instead of the copy embedded in the library.
    /// </summary>
    public static IReadOnlyList<MaterializedTask> Materialize(string outputDir, int seed = DefaultSeed,
        IEnumerable<string>? taskNames = null, string? shippedDataDir = null)
    {
        var selected = taskNames == null ? Definitions : taskNames.Select(n => Definitions[IndexOf(n)]).ToArray();
        Directory.CreateDirectory(outputDir);
        var written = new List<MaterializedTask>();
        foreach (var definition in selected)
        {
            var info = definition.Info;
            ulong taskSeed = SuiteRng.Mix((ulong)(uint)seed, SuiteRng.Hash(info.Name));
            var plan = definition.Plan(taskSeed, shippedDataDir);
            string dir = Path.GetFullPath(Path.Combine(outputDir, info.Name));
            string json = TaskWriter.TaskJson(info, plan, seed);
            bool reuse = TaskWriter.IsComplete(dir, json, plan);
            if (!reuse) TaskWriter.Write(dir, info, plan, json);
            written.Add(new MaterializedTask(info.Name, info.Group, dir, reuse));
        }
        return written;
    }

    /// <summary>
    /// Re-extracts the shipped subsets (data/suite/*.png and *.tsv) from the installed Debian packages
    /// dataset-fashion-mnist and opencv-doc into <paramref name="repoDataDir"/>; a missing package file is a
    /// <see cref="PeftSharpException"/> naming the file and the package. <paramref name="packageRoot"/> is the file
    /// system root the packages are installed under.
    /// </summary>
    public static void BuildFromPackages(string repoDataDir, string packageRoot = "/") =>
        PackageExtractor.Build(repoDataDir, packageRoot);

    static int IndexOf(string name)
    {
        Task(name); // throws the one-line error for unknown names
        return Array.FindIndex(Definitions, d => d.Info.Name == name);
    }
}
