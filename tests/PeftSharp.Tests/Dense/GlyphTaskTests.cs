using PeftSharp.Dense;

namespace PeftSharp.Tests.Dense;

/// <summary>The letter-tile tasks (glyphs-seg, glyphs-det): the same bytes on every materialisation, and read back
/// through the public loaders every object is exactly its tile, a filled square of the task's sizes.</summary>
public class GlyphTaskTests
{
    [Theory]
    [InlineData(DenseSuite.GlyphSegmentation)]
    [InlineData(DenseSuite.GlyphDetection)]
    public void A_glyph_task_is_the_same_bytes_every_time_it_is_made(string task)
    {
        var small = DenseSuite.Task(task) with { Name = task + "-small", Train = 6, Val = 3, Test = 3 };
        string a = DenseSuite.Materialize(TestFiles.TempDir("glyphs-a"), small), b = DenseSuite.Materialize(TestFiles.TempDir("glyphs-b"), small);
        var files = Directory.EnumerateFiles(a, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(a, f)).Order().ToList();
        Assert.Equal(files, Directory.EnumerateFiles(b, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(b, f)).Order().ToList());
        Assert.Equal(small.Kind == DenseKind.Segmentation ? 2 * 12 + 2 : 12 + 3 + 1, files.Count);   // images (+ labels) and task.json, with classes.txt or one annotation file per split
        foreach (var f in files) Assert.True(File.ReadAllBytes(Path.Combine(a, f)).SequenceEqual(File.ReadAllBytes(Path.Combine(b, f))), f);
    }

    [Fact]
    public void Detection_tiles_are_square_boxes_whose_mask_fills_them()
    {
        var info = DenseSuite.GlyphsDet;
        var det = CocoDataset.Open(DenseTestData.Full(info.Name), "val", 64);
        Assert.Equal(info.ClassNames, det.Categories.Select(c => c.Name));
        Assert.Equal(info.Val, det.Count);
        foreach (var image in det.Images)
        {
            Assert.InRange(image.Objects.Count, 1, info.MaxObjects);
            foreach (var o in image.Objects)
            {
                Assert.Equal(o.W, o.H);
                Assert.InRange(o.W, info.MinSide, info.MaxSide);
                Assert.Equal(o.W * o.H, o.Area);
                var mask = o.Segmentation!.Decode();
                for (int p = 0; p < mask.Length; p++)
                {
                    int x = p % 64, y = p / 64;
                    bool inside = x >= o.X && x < o.X + o.W && y >= o.Y && y < o.Y + o.H;
                    Assert.Equal(inside ? 1 : 0, mask[p]);
                }
            }
        }
    }

    [Fact]
    public void Segmentation_tiles_are_filled_squares_of_one_letter()
    {
        var info = DenseSuite.GlyphsSeg;
        var val = DenseTask.Open(DenseTestData.Full(info.Name)).Split("val", 64);
        Assert.Equal(info.ClassNames, val.ClassNames);
        Assert.Equal(11, val.ClassNames.Count);
        foreach (var labels in val.Labels!)
        {
            // Peel squares off from the top-left: the first unclaimed labelled pixel is a tile's corner, its run along the
            // row is the tile's side, and the whole square carries its class.
            var claimed = new bool[labels.Length];
            int tiles = 0;
            for (int p = 0; p < labels.Length; p++)
            {
                if (labels[p] == 0 || claimed[p]) continue;
                int x0 = p % 64, y0 = p / 64, side = 0;
                while (x0 + side < 64 && labels[p + side] == labels[p] && !claimed[p + side]) side++;
                if (side > info.MaxSide) side = info.MaxSide;   // two tiles of one letter side by side: the first is at most this wide
                while (side > info.MinSide && !Square(labels, x0, y0, side, labels[p])) side--;
                Assert.InRange(side, info.MinSide, info.MaxSide);
                Assert.True(Square(labels, x0, y0, side, labels[p]), $"tile at ({x0}, {y0})");
                for (int y = y0; y < y0 + side; y++)
                    for (int x = x0; x < x0 + side; x++) claimed[y * 64 + x] = true;
                tiles++;
            }
            Assert.InRange(tiles, 1, info.MaxObjects);
            Assert.All(labels, v => Assert.True(v < 11));
        }
    }

    static bool Square(byte[] labels, int x0, int y0, int side, byte label)
    {
        if (x0 + side > 64 || y0 + side > 64) return false;
        for (int y = y0; y < y0 + side; y++)
            for (int x = x0; x < x0 + side; x++)
                if (labels[y * 64 + x] != label) return false;
        return true;
    }
}
