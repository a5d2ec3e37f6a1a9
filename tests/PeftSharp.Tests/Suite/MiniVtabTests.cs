using System.Text.Json;
using PeftSharp.Data;
using PeftSharp.Suite;

namespace PeftSharp.Tests.Suite;

[Collection(SuiteCollection.Name)]
public class MiniVtabTests(SuiteFixture suite)
{
    static readonly Dictionary<string, int> ListCounts = new()
    {
        ["train800"] = 800, ["val200"] = 200, ["train800val200"] = 1000, ["test"] = 1000,
    };

    public static TheoryData<string> TaskNames => new(MiniVtab.Tasks.Select(t => t.Name));

    static List<(string Path, int Label)> ReadList(string dir, string list) =>
        File.ReadAllLines(Path.Combine(dir, list + ".txt")).Where(l => l.Length > 0)
            .Select(l => (l[..l.LastIndexOf(' ')], int.Parse(l[(l.LastIndexOf(' ') + 1)..]))).ToList();

    [Fact]
    public void The_suite_has_at_least_eight_tasks_in_all_three_groups()
    {
        Assert.True(MiniVtab.Tasks.Count >= 8);
        Assert.Equal(MiniVtab.Tasks.Count, MiniVtab.Tasks.Select(t => t.Name).Distinct().Count());
        Assert.True(MiniVtab.Tasks.Count(t => t.Group == TaskGroup.Structured) >= 3);
        Assert.Contains(MiniVtab.Tasks, t => t.Group == TaskGroup.Natural);
        Assert.Contains(MiniVtab.Tasks, t => t.Group == TaskGroup.Specialized);
        Assert.All(MiniVtab.Tasks, t => Assert.False(string.IsNullOrWhiteSpace(t.Provenance)));
        Assert.All(MiniVtab.Tasks, t => Assert.False(string.IsNullOrWhiteSpace(t.Licence)));
        Assert.Equal(MiniVtab.Tasks.Select(t => t.Name), suite.Tasks.Select(t => t.Name));
    }

    [Theory]
    [MemberData(nameof(TaskNames))]
    public void Lists_have_VTAB_1K_counts_and_every_listed_image_decodes_at_the_task_size(string name)
    {
        var info = MiniVtab.Task(name);
        string dir = suite.Task(name).Directory;

        foreach (var (list, count) in ListCounts)
        {
            var entries = ReadList(dir, list);
            Assert.Equal(count, entries.Count);
            Assert.Equal(entries.Count, entries.Select(e => e.Path).Distinct().Count());
        }
        var train = ReadList(dir, "train800");
        var val = ReadList(dir, "val200");
        Assert.Equal(train.Concat(val), ReadList(dir, "train800val200"));
        Assert.Empty(train.Select(e => e.Path).Intersect(val.Select(e => e.Path)));

        foreach (var (path, _) in ReadList(dir, "train800val200").Concat(ReadList(dir, "test")))
        {
            var image = ImageDecoder.Decode(Path.Combine(dir, path));
            Assert.Equal((info.ImageWidth, info.ImageHeight), (image.Width, image.Height));
        }
    }

    [Theory]
    [MemberData(nameof(TaskNames))]
    public void Labels_are_in_range_and_balanced_in_every_split(string name)
    {
        var info = MiniVtab.Task(name);
        string dir = suite.Task(name).Directory;

        foreach (var list in ListCounts.Keys)
        {
            var labels = ReadList(dir, list).Select(e => e.Label).ToList();
            Assert.All(labels, l => Assert.InRange(l, 0, info.NumClasses - 1));
            var perClass = Enumerable.Range(0, info.NumClasses).Select(c => labels.Count(l => l == c)).ToList();
            double fair = labels.Count / (double)info.NumClasses;
            Assert.All(perClass, n => Assert.InRange(n, Math.Floor(fair), Math.Ceiling(fair)));
        }
    }

    [Theory]
    [MemberData(nameof(TaskNames))]
    public void VtabTask_reads_each_task_with_its_classes_and_task_json_describes_it(string name)
    {
        var info = MiniVtab.Task(name);
        var task = VtabTask.Open(suite.Task(name).Directory);

        Assert.Equal(info.NumClasses, task.NumClasses);
        Assert.Equal(info.ClassNames, task.ClassNames);
        Assert.Equal((800, 200, 1000, info.TestCount), (task.Train800.Count, task.Val200.Count, task.Train800Val200.Count, task.Test.Count));
        var (image, label) = task.Test[0];
        using (image) Assert.Equal(new long[] { 3, info.ImageHeight, info.ImageWidth }, image.shape);
        Assert.InRange(label, 0, info.NumClasses - 1);

        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(task.Directory, "task.json")));
        var root = json.RootElement;
        Assert.Equal(name, root.GetProperty("name").GetString());
        Assert.Equal(info.Group.ToString().ToLowerInvariant(), root.GetProperty("group").GetString());
        Assert.Equal(info.NumClasses, root.GetProperty("num_classes").GetInt32());
        Assert.Equal(MiniVtab.DefaultSeed, root.GetProperty("seed").GetInt32());
        Assert.Equal(info.Provenance, root.GetProperty("provenance").GetString());
        Assert.Equal(info.Licence, root.GetProperty("licence").GetString());
    }

    [Fact]
    public void Materialising_again_gives_byte_identical_files_and_another_seed_gives_other_images()
    {
        string[] names = ["clevr-count", "snorb-azim", "digits-microscopy"];
        string again = TestFiles.TempDir("peftsharp-suite-again"), other = TestFiles.TempDir("peftsharp-suite-seed");
        try
        {
            MiniVtab.Materialize(again, MiniVtab.DefaultSeed, names);
            foreach (string name in names)
            {
                string first = suite.Task(name).Directory, second = Path.Combine(again, name);
                var files = Directory.GetFiles(first, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(first, f)).Order().ToList();
                Assert.Equal(files, Directory.GetFiles(second, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(second, f)).Order());
                Assert.All(files, f => Assert.True(File.ReadAllBytes(Path.Combine(first, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(second, f))), f));
            }

            MiniVtab.Materialize(other, 7, ["clevr-count"]);
            Assert.NotEqual(File.ReadAllText(Path.Combine(suite.Task("clevr-count").Directory, "test.txt")),
                File.ReadAllText(Path.Combine(other, "clevr-count", "test.txt")));
            Assert.NotEqual(File.ReadAllBytes(Path.Combine(suite.Task("clevr-count").Directory, "test", "00000.png")),
                File.ReadAllBytes(Path.Combine(other, "clevr-count", "test", "00000.png")));
        }
        finally
        {
            Directory.Delete(again, recursive: true);
            Directory.Delete(other, recursive: true);
        }
    }

    [Fact]
    public void A_complete_task_is_reused_and_a_damaged_one_is_rewritten()
    {
        string root = TestFiles.TempDir("peftsharp-suite-reuse");
        try
        {
            Assert.False(MiniVtab.Materialize(root, 3, ["dsprites-loc"]).Single().Reused);
            Assert.True(MiniVtab.Materialize(root, 3, ["dsprites-loc"]).Single().Reused);

            string image = Path.Combine(root, "dsprites-loc", "val", "00017.png");
            byte[] original = File.ReadAllBytes(image);
            File.Delete(image);
            Assert.False(MiniVtab.Materialize(root, 3, ["dsprites-loc"]).Single().Reused);
            Assert.Equal(original, File.ReadAllBytes(image));

            // A different seed does not match the task.json on disk, so the task is regenerated.
            Assert.False(MiniVtab.Materialize(root, 4, ["dsprites-loc"]).Single().Reused);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void Unknown_task_names_are_user_errors()
    {
        var error = Assert.Throws<PeftSharpException>(() => MiniVtab.Materialize(Path.Combine(Path.GetTempPath(), "peftsharp-never-written"), taskNames: ["cifar"]));
        Assert.Contains("cifar", error.Message);
        Assert.Contains("clevr-count", error.Message);
    }
}
