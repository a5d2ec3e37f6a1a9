using PeftSharp.Data;

namespace PeftSharp.Tests.Data;

public class VtabTaskTests
{
    /// <summary>A task folder with four tiny lists over labels 0..3.</summary>
    static TempFolder MakeTask()
    {
        var dir = new TempFolder();
        for (int i = 0; i < 6; i++)
            TestImages.WriteSolidPng(dir.File($"images/{i}.png"), 4, 4, (byte)(i * 40), 0, 0);
        dir.WriteText("train800.txt", "images/0.png 0\nimages/1.png 1\nimages/2.png 2\n");
        dir.WriteText("val200.txt", "images/3.png 3\n");
        dir.WriteText("train800val200.txt", "images/0.png 0\nimages/1.png 1\nimages/2.png 2\nimages/3.png 3\n");
        dir.WriteText("test.txt", "images/4.png 3\nimages/5.png 0\n");
        return dir;
    }

    [Fact]
    public void Opens_the_four_splits_with_labels_and_images()
    {
        using var dir = MakeTask();

        var task = VtabTask.Open(dir.Path);

        Assert.Equal(3, task.Train800.Count);
        Assert.Equal(1, task.Val200.Count);
        Assert.Equal(4, task.Train800Val200.Count);
        Assert.Equal(2, task.Split("test").Count);
        Assert.Equal([0, 1, 2], Enumerable.Range(0, 3).Select(task.Train800.Label));
        Assert.Equal(Path.Combine(dir.Path, "images/3.png"), task.Val200.ImagePath(0));
        var (image, label) = task.Test[0];
        using (image)
        {
            Assert.Equal(3, label);
            Assert.Equal(160 / 255f, image[0, 0, 0].item<float>(), 6);
        }
        Assert.Null(task.ClassNames);
    }

    [Fact]
    public void Number_of_classes_is_the_largest_label_of_the_training_lists_plus_one()
    {
        using var dir = MakeTask();

        var task = VtabTask.Open(dir.Path);

        Assert.Equal(4, task.NumClasses);
        Assert.All(VtabTask.SplitNames, s => Assert.Equal(4, task.Split(s).NumClasses));

        // A label only test.txt uses would silently grow the head: it is an error naming the line.
        dir.WriteText("test.txt", "images/4.png 4\nimages/5.png 0\n");
        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(dir.Path));
        Assert.Contains("test.txt line 1: label 4 is beyond the 4 classes the training lists use (0..3)", e.Message);
    }

    [Fact]
    public void Classes_txt_gives_the_number_and_names_of_classes()
    {
        using var dir = MakeTask();
        dir.WriteText("classes.txt", "a\nb\nc\nd\ne\nf\ng\n\n");

        var task = VtabTask.Open(dir.Path);

        Assert.Equal(7, task.NumClasses);
        Assert.Equal("g", task.Train800.ClassNames![6]);
    }

    [Fact]
    public void Unknown_split_name_lists_the_choices()
    {
        using var dir = MakeTask();
        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(dir.Path).Split("train1000"));
        Assert.Contains("train800val200", e.Message);
    }

    [Fact]
    public void Missing_list_file_is_named()
    {
        using var dir = MakeTask();
        File.Delete(Path.Combine(dir.Path, "val200.txt"));

        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(dir.Path));

        Assert.Contains(Path.Combine(dir.Path, "val200.txt"), e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Missing_task_folder_is_named()
    {
        using var dir = new TempFolder();
        string missing = Path.Combine(dir.Path, "dtd");
        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(missing));
        Assert.Contains(missing, e.Message);
    }

    [Theory]
    [InlineData("images/2.png", "malformed")]
    [InlineData("images/2.png two", "not an integer")]
    [InlineData("images/2.png 2.0", "not an integer")]
    [InlineData("images/2.png -1", "out of range")]
    public void Bad_line_names_list_file_and_line(string badLine, string expected)
    {
        using var dir = MakeTask();
        string list = dir.WriteText("train800.txt", $"images/0.png 0\n\nimages/1.png 1\n{badLine}\n");

        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(dir.Path));

        Assert.StartsWith($"{list} line 4: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Label_beyond_classes_txt_names_list_file_and_line()
    {
        using var dir = MakeTask();
        dir.WriteText("classes.txt", "a\nb\nc\nd\n");
        dir.WriteText("test.txt", "images/4.png 4\nimages/5.png 0\n");

        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(dir.Path));

        Assert.StartsWith($"{Path.Combine(dir.Path, "test.txt")} line 1: label 4 out of range", e.Message);
        Assert.Contains("0..3", e.Message);
    }

    [Fact]
    public void Image_the_folder_lacks_names_list_file_line_and_image()
    {
        using var dir = MakeTask();
        File.Delete(Path.Combine(dir.Path, "images/5.png"));

        var e = Assert.Throws<PeftSharpException>(() => VtabTask.Open(dir.Path));

        Assert.StartsWith($"{Path.Combine(dir.Path, "test.txt")} line 2: ", e.Message);
        Assert.Contains("images/5.png", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Undecodable_image_names_list_file_and_line_when_read()
    {
        using var dir = MakeTask();
        dir.WriteText("images/3.png", "garbage");
        var task = VtabTask.Open(dir.Path);

        var e = Assert.Throws<PeftSharpException>(() => task.Train800Val200.ReadImage(3));

        Assert.StartsWith($"{Path.Combine(dir.Path, "train800val200.txt")} line 4: image 'images/3.png'", e.Message);
        Assert.Contains("cannot decode", e.Message);
    }

    [Fact]
    public void Skip_bad_mode_keeps_good_entries_and_reports_each_bad_one()
    {
        using var dir = MakeTask();
        dir.WriteText("classes.txt", "a\nb\nc\nd\ne\n");
        dir.WriteText("train800.txt", "images/0.png 0\nimages/1.png\nimages/9.png 1\nimages/2.png 2\nimages/3.png 5\nimages/4.png x\n");

        var task = VtabTask.Open(dir.Path, skipBad: true);

        var train = task.Train800;
        Assert.True(train.SkipBad);
        Assert.Equal(2, train.Count);
        Assert.Equal([1, 4], Enumerable.Range(0, 2).Select(train.LineNumber));
        Assert.Equal([0, 2], Enumerable.Range(0, 2).Select(train.Label));
        Assert.Equal([2, 3, 5, 6], train.Skipped.Select(s => s.Line!.Value));
        Assert.All(train.Skipped, s => Assert.Equal(train.ListPath, s.File));
        Assert.Contains("malformed", train.Skipped[0].Reason);
        Assert.Contains("not found", train.Skipped[1].Reason);
        Assert.Contains("out of range", train.Skipped[2].Reason);
        Assert.Contains("not an integer", train.Skipped[3].Reason);
        Assert.StartsWith($"{train.ListPath} line 2: ", train.Skipped[0].Message);
        Assert.Empty(task.Test.Skipped);
    }
}

public class ListFileDatasetTests
{
    [Fact]
    public void Paths_are_relative_to_the_list_folder_and_may_contain_spaces()
    {
        using var dir = new TempFolder();
        TestImages.WriteSolidPng(dir.File("lists/my images/a b.png"), 3, 3, 0, 255, 0);
        TestImages.WriteSolidPng(dir.File("lists/c.png"), 3, 3, 0, 0, 255);
        string list = dir.WriteText("lists/all.txt", "my images/a b.png 1\r\nc.png\t0\r\n");

        var data = ListFileDataset.Open(list);

        Assert.Equal(2, data.Count);
        Assert.Equal(2, data.NumClasses);
        Assert.Equal(1, data.Label(0));
        Assert.Equal(255, data.ReadImage(0).Pixels[1]);
        Assert.Equal(255, data.ReadImage(1).Pixels[2]);
        Assert.Contains(list, data.Source);
    }

    [Fact]
    public void Label_at_or_beyond_the_declared_number_of_classes_names_file_and_line()
    {
        using var dir = new TempFolder();
        TestImages.WriteSolidPng(dir.File("a.png"), 2, 2, 1, 2, 3);
        string list = dir.WriteText("l.txt", "a.png 0\na.png 3\n");

        var e = Assert.Throws<PeftSharpException>(() => ListFileDataset.Open(list, numClasses: 3));

        Assert.StartsWith($"{list} line 2: label 3 out of range", e.Message);
    }

    [Fact]
    public void Empty_list_is_an_error()
    {
        using var dir = new TempFolder();
        string list = dir.WriteText("l.txt", "\n  \n");
        var e = Assert.Throws<PeftSharpException>(() => ListFileDataset.Open(list));
        Assert.StartsWith(list, e.Message);
        Assert.Contains("no entries", e.Message);
    }

    [Fact]
    public void Index_outside_the_dataset_is_rejected()
    {
        using var dir = new TempFolder();
        TestImages.WriteSolidPng(dir.File("a.png"), 2, 2, 1, 2, 3);
        var data = ListFileDataset.Open(dir.WriteText("l.txt", "a.png 0\n"));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Label(1));
    }
}
