using PeftSharp.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Data;

public class DataLoaderTests
{
    const int N = 10;

    /// <summary>N solid-grey images of assorted sizes; image i has grey level 20·i and label i mod 3.</summary>
    static (TempFolder Dir, ListFileDataset Data) MakeData(bool skipBad = false, Action<TempFolder>? spoil = null)
    {
        var dir = new TempFolder();
        var lines = new List<string>();
        for (int i = 0; i < N; i++)
        {
            byte v = (byte)(20 * i);
            if (i % 2 == 0) TestImages.WriteSolidPng(dir.File($"img/{i}.png"), 5 + i, 7, v, v, v);
            else TestImages.WriteGray(dir.File($"img/{i}.png"), 12, 3 + i, (_, _) => v, SkiaSharp.SKEncodedImageFormat.Png);
            lines.Add($"img/{i}.png {i % 3}");
        }
        string list = dir.WriteText("list.txt", string.Join("\n", lines));
        spoil?.Invoke(dir);
        return (dir, ListFileDataset.Open(list, skipBad: skipBad));
    }

    /// <summary>The dataset index each image of a batch came from, recovered from its grey level.</summary>
    static int[] IndicesFromPixels(Batch batch) =>
        Enumerable.Range(0, batch.Size).Select(b => (int)Math.Round(batch.Images[b].mean().item<float>() * 255 / 20)).ToArray();

    static List<int[]> Orders(DataLoader loader, int epoch) =>
        loader.Epoch(epoch).Select(b => { using (b) return b.Indices.ToArray(); }).ToList();

    [Fact]
    public void Ordered_batches_have_the_right_shapes_types_labels_and_pixels()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 8, BatchSize = 4 });

        var batches = loader.Epoch(0).ToList();

        Assert.Equal(3, loader.BatchesPerEpoch);
        Assert.Equal([4, 4, 2], batches.Select(b => b.Size));
        foreach (var batch in batches)
        {
            Assert.Equal(new long[] { batch.Size, 3, 8, 8 }, batch.Images.shape);
            Assert.Equal(ScalarType.Float32, batch.Images.dtype);
            Assert.Equal(ScalarType.Int64, batch.Labels.dtype);
            Assert.Equal(batch.Indices.Select(i => (long)(i % 3)), batch.Labels.data<long>().ToArray());
            Assert.Equal(batch.Indices, IndicesFromPixels(batch));
            // Solid images stay solid through decode, resize and the uint8 cache.
            for (int b = 0; b < batch.Size; b++)
                Assert.True(batch.Images[b].allclose(full(new long[] { 3, 8, 8 }, 20 * batch.Indices[b] / 255f), rtol: 0, atol: 1e-6));
            batch.Dispose();
        }
        Assert.Equal(Enumerable.Range(0, N), batches.SelectMany(b => b.Indices));
    }

    [Fact]
    public void A_loader_built_inside_inference_mode_fills_its_cache_on_worker_threads()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var mode = inference_mode();
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 8, BatchSize = 5, DecodeThreads = 2 });

        var indices = loader.Epoch(0).SelectMany(b => { using (b) return IndicesFromPixels(b); }).ToArray();

        Assert.Equal(Enumerable.Range(0, N), indices);
    }

    [Fact]
    public void Drop_last_leaves_out_the_short_batch()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 4, DropLast = true, Shuffle = true });

        var orders = Orders(loader, 0);

        Assert.Equal(2, loader.BatchesPerEpoch);
        Assert.Equal([4, 4], orders.Select(o => o.Length));
    }

    [Fact]
    public void Shuffling_is_seeded_covers_every_image_once_and_changes_with_epoch_and_seed()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        var options = new DataLoaderOptions { ImageSize = 4, BatchSize = 3, Shuffle = true, Seed = 42 };
        using var loader = new DataLoader(data, options);
        using var sameSeed = new DataLoader(data, options);
        using var otherSeed = new DataLoader(data, options with { Seed = 7 });

        var epoch0 = Orders(loader, 0);
        var epoch1 = Orders(loader, 1);

        foreach (var epoch in new[] { epoch0, epoch1 })
            Assert.Equal(Enumerable.Range(0, N), epoch.SelectMany(o => o).Order());
        Assert.Equal(epoch0, Orders(sameSeed, 0));
        Assert.Equal(epoch0, Orders(loader, 0)); // an epoch can be replayed
        Assert.NotEqual(epoch0.SelectMany(o => o), epoch1.SelectMany(o => o));
        Assert.NotEqual(epoch0.SelectMany(o => o), Orders(otherSeed, 0).SelectMany(o => o));
        Assert.NotEqual(Enumerable.Range(0, N), epoch0.SelectMany(o => o));
    }

    [Fact]
    public void Shuffled_batches_carry_the_images_and_labels_of_their_indices()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 3, Shuffle = true });

        foreach (var batch in loader.Epoch(3))
            using (batch)
            {
                Assert.Equal(batch.Indices, IndicesFromPixels(batch));
                Assert.Equal(batch.Indices.Select(i => (long)(i % 3)), batch.Labels.data<long>().ToArray());
            }
    }

    [Fact]
    public void Normalisation_is_applied_to_every_batch()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 16, Normalization = Normalization.Inception });

        using var batch = loader.Epoch(0).Single();

        for (int i = 0; i < N; i++)
            Assert.Equal((20 * i / 255f - 0.5f) / 0.5f, batch.Images[i, 2, 3, 3].item<float>(), 5);
    }

    [Fact]
    public void Augmented_epochs_are_reproducible_and_differ_between_seeds()
    {
        using var dir = new TempFolder();
        var lines = new List<string>();
        for (int i = 0; i < 6; i++)
        {
            TestImages.WritePng(dir.File($"{i}.png"), 16, 16, (x, y) => ((byte)(x * 16), (byte)(y * 16), (byte)(i * 40)));
            lines.Add($"{i}.png 0");
        }
        var data = ListFileDataset.Open(dir.WriteText("l.txt", string.Join("\n", lines)));
        var options = new DataLoaderOptions { ImageSize = 16, BatchSize = 6, Shuffle = true, Augmentation = Augmentation.ManyShot, Seed = 1 };
        using var a = new DataLoader(data, options);
        using var b = new DataLoader(data, options);
        using var c = new DataLoader(data, options with { Seed = 2 });
        using var plain = new DataLoader(data, options with { Augmentation = null });

        using var batchA = a.Epoch(0).Single();
        using var batchB = b.Epoch(0).Single();
        using var batchC = c.Epoch(0).Single();
        using var batchPlain = plain.Epoch(0).Single();

        Assert.True(batchA.Images.allclose(batchB.Images, 0, 0));
        Assert.False(batchA.Images.allclose(batchC.Images));
        // Same seed, same order with or without augmentation, but the pixels change.
        Assert.Equal(batchPlain.Indices, batchA.Indices);
        Assert.False(batchA.Images.allclose(batchPlain.Images));
    }

    [Fact]
    public void Undecodable_image_fails_loading_naming_list_and_line()
    {
        var (dir, data) = MakeData(spoil: d => d.WriteText("img/6.png", "broken"));
        using var _ = dir;

        var e = Assert.Throws<PeftSharpException>(() => new DataLoader(data, new DataLoaderOptions { ImageSize = 4 }));

        Assert.StartsWith($"{data.ListPath} line 7: image 'img/6.png': cannot decode image", e.Message);
    }

    [Fact]
    public void Skip_bad_loading_leaves_out_undecodable_images_and_reports_them()
    {
        var (dir, data) = MakeData(skipBad: true, spoil: d => { d.WriteText("img/2.png", "broken"); d.WriteText("img/6.png", "x"); });
        using var _ = dir;

        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 4 });

        Assert.Equal(N - 2, loader.Count);
        Assert.Equal([3, 7], loader.Skipped.Select(s => s.Line!.Value));
        var seen = loader.Epoch(0).SelectMany(b => { using (b) { Assert.Equal(b.Indices, IndicesFromPixels(b)); return b.Indices.ToArray(); } });
        Assert.Equal(Enumerable.Range(0, N).Where(i => i != 2 && i != 6), seen);
    }

    [Fact]
    public void Batches_join_the_callers_dispose_scope()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 4 });
        List<Batch> batches;

        using (NewDisposeScope())
        {
            batches = loader.Epoch(0).ToList();
            Assert.All(batches, b => Assert.False(b.Images.IsInvalid));
        }

        Assert.All(batches, b => Assert.True(b.Images.IsInvalid && b.Labels.IsInvalid));
    }

    [Fact]
    public void Abandoning_an_epoch_frees_the_loader_for_the_next_one()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 2, Shuffle = true });

        using (var first = loader.Epoch(0).First()) Assert.Equal(2, first.Size);

        Assert.Equal(5, Orders(loader, 1).Count);
    }

    [Fact]
    public void Two_epochs_at_once_are_refused()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 4, BatchSize = 2 });

        using var first = loader.Epoch(0).GetEnumerator();
        Assert.True(first.MoveNext());
        first.Current.Dispose();

        Assert.Throws<InvalidOperationException>(() => loader.Epoch(1).GetEnumerator().MoveNext());
    }

    [Fact]
    public void Bad_options_name_the_field()
    {
        var (dir, data) = MakeData();
        using var _ = dir;
        var e = Assert.Throws<PeftSharpException>(() => new DataLoader(data, new DataLoaderOptions { BatchSize = 0 }));
        Assert.StartsWith("DataLoaderOptions.BatchSize:", e.Message);
    }

    [Fact]
    public void Decodes_an_idx_dataset_into_the_cache()
    {
        using var dir = new TempFolder();
        var pixels = new byte[2 * 4 * 4];
        Array.Fill(pixels, (byte)51, 16, 16);
        var images = new byte[16 + pixels.Length];
        images[2] = 8; images[3] = 3; images[7] = 2; images[11] = 4; images[15] = 4;
        pixels.CopyTo(images, 16);
        File.WriteAllBytes(dir.File("i"), images);
        File.WriteAllBytes(dir.File("l"), [0, 0, 8, 1, 0, 0, 0, 2, 1, 0]);
        var data = IdxDataset.Open(dir.File("i"), dir.File("l"));

        using var loader = new DataLoader(data, new DataLoaderOptions { ImageSize = 8, BatchSize = 2 });
        using var batch = loader.Epoch(0).Single();

        Assert.Equal(0f, batch.Images[0].abs().max().item<float>());
        Assert.Equal(0.2f, batch.Images[1].min().item<float>(), 6);
        Assert.Equal(0.2f, batch.Images[1].max().item<float>(), 6);
        Assert.Equal(new long[] { 1, 0 }, batch.Labels.data<long>().ToArray());
    }
}
