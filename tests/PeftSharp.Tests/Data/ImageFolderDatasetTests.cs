using PeftSharp.Data;

namespace PeftSharp.Tests.Data;

public class ImageFolderDatasetTests
{
    [Fact]
    public void Sorted_class_folders_give_labels_and_only_image_files_count()
    {
        using var dir = new TempFolder();
        TestImages.WriteSolidPng(dir.File("zebra/1.png"), 2, 2, 10, 0, 0);
        TestImages.WriteJpeg(dir.File("ant/b.JPG"), 8, 8, (_, _) => (0, 200, 0));
        TestImages.WriteSolidPng(dir.File("ant/sub/a.png"), 2, 2, 20, 0, 0);
        dir.WriteText("ant/readme.txt", "not an image");
        TestImages.WriteSolidPng(dir.File("Bee/x.png"), 2, 2, 30, 0, 0); // upper case sorts first (ordinal)

        var data = ImageFolderDataset.Open(dir.Path);

        Assert.Equal(["Bee", "ant", "zebra"], data.ClassNames);
        Assert.Equal(3, data.NumClasses);
        Assert.Equal(4, data.Count);
        Assert.Equal([0, 1, 1, 2], Enumerable.Range(0, 4).Select(data.Label));
        Assert.EndsWith("b.JPG", data.ImagePath(1));
        Assert.Equal(20, data.ReadImage(2).Pixels[0]);
    }

    [Fact]
    public void Class_folder_without_images_is_named()
    {
        using var dir = new TempFolder();
        TestImages.WriteSolidPng(dir.File("a/1.png"), 2, 2, 1, 1, 1);
        dir.WriteText("b/notes.txt", "x");

        var e = Assert.Throws<PeftSharpException>(() => ImageFolderDataset.Open(dir.Path));

        Assert.StartsWith($"{Path.Combine(dir.Path, "b")}: class folder has no images", e.Message);
    }

    [Fact]
    public void Skip_bad_keeps_the_empty_class_label_and_reports_it()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(Path.Combine(dir.Path, "a"));
        TestImages.WriteSolidPng(dir.File("b/1.png"), 2, 2, 1, 1, 1);

        var data = ImageFolderDataset.Open(dir.Path, skipBad: true);

        Assert.Equal(2, data.NumClasses);
        Assert.Equal(1, data.Label(0));
        Assert.Equal(Path.Combine(dir.Path, "a"), Assert.Single(data.Skipped).File);
    }

    [Fact]
    public void Folder_without_class_folders_is_an_error()
    {
        using var dir = new TempFolder();
        TestImages.WriteSolidPng(dir.File("1.png"), 2, 2, 1, 1, 1);
        var e = Assert.Throws<PeftSharpException>(() => ImageFolderDataset.Open(dir.Path));
        Assert.StartsWith(dir.Path, e.Message);
        Assert.Contains("no class sub-folders", e.Message);
    }

    [Fact]
    public void Undecodable_image_is_named_when_read()
    {
        using var dir = new TempFolder();
        string bad = dir.WriteText("a/1.webp", "nope");
        var data = ImageFolderDataset.Open(dir.Path);

        var e = Assert.Throws<PeftSharpException>(() => data.ReadImage(0));

        Assert.StartsWith($"{bad}: cannot decode image", e.Message);
    }
}
