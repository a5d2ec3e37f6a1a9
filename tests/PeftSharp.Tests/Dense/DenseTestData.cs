using System.Text.Json.Nodes;
using PeftSharp.Dense;

namespace PeftSharp.Tests.Dense;

/// <summary>The built-in dense tasks materialised once per test process, and small copies of them (the first images of
/// each split, in the same formats) for tests that train: reading a whole split decodes hundreds of PNGs.</summary>
public static class DenseTestData
{
    static readonly string Root = TestFiles.TempDir("dense-suite");
    static readonly Dictionary<string, Lazy<string>> Tasks = DenseSuite.Tasks.ToDictionary(t => t.Name, t => new Lazy<string>(() => DenseSuite.Materialize(Root, t)));

    /// <summary>The whole built-in task (materialised on first use; every task under one root).</summary>
    public static string Full(string task) => Tasks[task].Value;

    /// <summary>A fresh folder with the first <paramref name="images"/> images of train, val and test of a built-in task.</summary>
    public static string Small(string task, int images)
    {
        string from = Full(task), to = TestFiles.TempDir("dense-small");
        foreach (var split in new[] { "train", "val", "test" })
        {
            if (DenseSuite.Task(task).Kind == DenseKind.Segmentation)
            {
                foreach (var folder in new[] { SegmentationFolder.ImagesFolder, SegmentationFolder.LabelsFolder })
                {
                    Directory.CreateDirectory(Path.Combine(to, folder, split));
                    for (int i = 0; i < images; i++)
                        File.Copy(Path.Combine(from, folder, split, $"{i:D5}.png"), Path.Combine(to, folder, split, $"{i:D5}.png"));
                }
                continue;
            }
            Directory.CreateDirectory(Path.Combine(to, split));
            Directory.CreateDirectory(Path.Combine(to, "annotations"));
            var coco = JsonNode.Parse(File.ReadAllText(CocoDataset.AnnotationFile(from, split)))!.AsObject();
            var kept = coco["images"]!.AsArray().Take(images).Select(i => i!.DeepClone()).ToArray();
            var ids = kept.Select(i => i["id"]!.GetValue<long>()).ToHashSet();
            foreach (var image in kept) File.Copy(Path.Combine(from, split, image["file_name"]!.GetValue<string>()), Path.Combine(to, split, image["file_name"]!.GetValue<string>()));
            coco["images"] = new JsonArray(kept);
            coco["annotations"] = new JsonArray(coco["annotations"]!.AsArray().Where(a => ids.Contains(a!["image_id"]!.GetValue<long>())).Select(a => a!.DeepClone()).ToArray());
            File.WriteAllText(CocoDataset.AnnotationFile(to, split), coco.ToJsonString());
        }
        if (DenseSuite.Task(task).Kind == DenseKind.Segmentation) File.Copy(Path.Combine(from, SegmentationFolder.ClassesFile), Path.Combine(to, SegmentationFolder.ClassesFile));
        return to;
    }
}
