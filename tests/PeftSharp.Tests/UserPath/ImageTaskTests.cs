using PeftSharp.Data;

namespace PeftSharp.Tests.UserPath;

/// <summary>Task folders in every layout users have, and the split rule of a plain class-per-folder tree.</summary>
public class ImageTaskTests
{
    [Fact]
    public void A_class_folder_tree_is_split_per_class_by_the_fractions_with_class_names_from_the_folders()
    {
        string dir = ClassFolders.Create(perClass: 200);
        try
        {
            var task = ImageTask.Open(dir, new SplitRule(0.1, 0.2, Seed: 7));
            Assert.Equal(ClassFolders.Names, task.ClassNames);
            Assert.Equal("class-folders (val=0.1,test=0.2,seed=7)", task.Layout);
            Assert.Equal("test(val=0.1,test=0.2,seed=7)", task.TestName);
            Assert.Equal(800, task.Train.Count + task.Val.Count + task.Test.Count);
            Assert.Equal(task.Train.Count + task.Val.Count, task.TrainVal.Count);
            // Per class, each split's share is the fraction up to sampling (200 images: sd of the test share ≈ 0.028).
            for (int c = 0; c < 4; c++)
            {
                double test = Enumerable.Range(0, task.Test.Count).Count(i => task.Test.Label(i) == c) / 200.0;
                double val = Enumerable.Range(0, task.Val.Count).Count(i => task.Val.Label(i) == c) / 200.0;
                Assert.InRange(test, 0.11, 0.29);
                Assert.InRange(val, 0.03, 0.17);
            }
            // No image is in two splits.
            var all = new[] { task.Train, task.Val, task.Test }.SelectMany(s => Enumerable.Range(0, s.Count).Select(i => s.EntryPath(i))).ToList();
            Assert.Equal(all.Count, all.Distinct().Count());
            // Another seed splits differently.
            var other = ImageTask.Open(dir, new SplitRule(0.1, 0.2, Seed: 8));
            Assert.NotEqual(Paths(task.Test), Paths(other.Test));
        }
        finally { Directory.Delete(Path.GetDirectoryName(dir)!, recursive: true); }
    }

    [Fact]
    public void Adding_images_never_moves_an_existing_one_and_changes_the_data_fingerprint()
    {
        string dir = ClassFolders.Create(perClass: 40);
        try
        {
            var before = ImageTask.Open(dir);
            string fingerprint = before.Fingerprint(before.TrainValName);
            var rng = new Random(9);
            for (int i = 0; i < 30; i++) ClassFolders.Write(Path.Combine(dir, ClassFolders.Names[i % 4], $"new_{i:D3}.png"), i % 4, rng);
            var after = ImageTask.Open(dir);
            foreach (var (b, a) in new[] { (before.Train, after.Train), (before.Val, after.Val), (before.Test, after.Test) })
                Assert.Subset(Paths(a).ToHashSet(), Paths(b).ToHashSet());
            Assert.Equal(before.Train.Count + before.Val.Count + before.Test.Count + 30, after.Train.Count + after.Val.Count + after.Test.Count);
            Assert.NotEqual(fingerprint, after.Fingerprint(after.TrainValName));
            Assert.Equal(before.Fingerprint(before.TestName) == after.Fingerprint(after.TestName), Paths(before.Test).SequenceEqual(Paths(after.Test)));
            // Moving the folder keeps the fingerprint: it hashes paths relative to the task folder.
            string moved = dir + "-moved", expected = after.Fingerprint(after.TrainValName);
            Directory.Move(dir, moved);
            Assert.Equal(expected, ImageTask.Open(moved).Fingerprint(after.TrainValName));
            Directory.Move(moved, dir);
        }
        finally { Directory.Delete(Path.GetDirectoryName(dir)!, recursive: true); }
    }

    [Fact]
    public void Train_val_test_folders_are_used_as_they_are_and_a_class_unknown_to_train_is_an_error()
    {
        string root = TestFiles.TempDir("split-folders");
        try
        {
            ClassFolders.Create(Path.Combine(root, "task", "train"), perClass: 5);
            ClassFolders.Create(Path.Combine(root, "task", "test"), perClass: 2, seed: 4);
            Directory.Delete(Path.Combine(root, "task", "test", "moon"), recursive: true);   // a class may be absent from test
            var task = ImageTask.Open(Path.Combine(root, "task"));
            Assert.Equal(("split-folders", "train", (string?)null, "train", "test"), (task.Layout, task.TrainName, task.ValName, task.TrainValName, task.TestName));
            Assert.Equal((20, 6), (task.Train.Count, task.Test.Count));
            Assert.Equal(3, task.Test.Label(Enumerable.Range(0, task.Test.Count).First(i => task.Test.EntryPath(i)!.Contains("/star/"))));
            var noVal = Assert.Throws<PeftSharpException>(() => task.Val);
            Assert.Contains("no validation split", noVal.Message);

            Directory.CreateDirectory(Path.Combine(root, "task", "test", "comet"));
            ClassFolders.Write(Path.Combine(root, "task", "test", "comet", "x.png"), 0, new Random(1));
            var unknown = Assert.Throws<PeftSharpException>(() => ImageTask.Open(Path.Combine(root, "task")));
            Assert.Contains("class 'comet' is not among the training classes", unknown.Message);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void Lists_of_any_size_work_and_a_class_too_small_to_train_is_named()
    {
        string dir = TestFiles.TempDir("lists-any");
        try
        {
            var rng = new Random(2);
            for (int i = 0; i < 10; i++) ClassFolders.Write(Path.Combine(dir, $"im{i}.png"), i % 2, rng);
            File.WriteAllLines(Path.Combine(dir, "train.txt"), Enumerable.Range(0, 5).Select(i => $"im{i}.png {i % 2}"));
            File.WriteAllLines(Path.Combine(dir, "val.txt"), ["im5.png 1", "im6.png 0"]);
            File.WriteAllLines(Path.Combine(dir, "test.txt"), ["im7.png 1", "im8.png 0", "im9.png 1"]);
            var task = ImageTask.Open(dir);
            Assert.Equal(("lists", 5, 2, 7, 3), (task.Layout, task.Train.Count, task.Val.Count, task.TrainVal.Count, task.Test.Count));
            Assert.Null(task.ClassNames);

            string tiny = ClassFolders.Create(perClass: 20);
            foreach (var f in Directory.GetFiles(Path.Combine(tiny, "moon")).Skip(1)) File.Delete(f);
            var rule = new SplitRule(0.1, 0.2, Seed: 0);
            string onlyImage = Directory.GetFiles(Path.Combine(tiny, "moon")).Single();
            // Find a seed that puts moon's single image outside train, so the error is certain.
            int seed = Enumerable.Range(0, 100).First(s => (rule with { Seed = s }).SplitOf("moon", Path.GetFileName(onlyImage)) != "train");
            var error = Assert.Throws<PeftSharpException>(() => ImageTask.Open(tiny, rule with { Seed = seed }));
            Assert.Contains("class 'moon' has 1 image(s) and none falls in the training split", error.Message);
            Directory.Delete(Path.GetDirectoryName(tiny)!, recursive: true);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData(0.5, 0.5, "val_fraction + test_fraction must be below 1")]
    [InlineData(0.1, 0, "test_fraction must be in (0, 1)")]
    [InlineData(-0.1, 0.2, "val_fraction must be in [0, 1)")]
    public void A_split_rule_that_leaves_nothing_sensible_is_refused(double val, double test, string expected) =>
        Assert.Contains(expected, Assert.Throws<PeftSharpException>(() => new SplitRule(val, test).Validate()).Message);

    static List<string> Paths(ImageDataset data) => Enumerable.Range(0, data.Count).Select(i => data.EntryPath(i)!).Order(StringComparer.Ordinal).ToList();
}
