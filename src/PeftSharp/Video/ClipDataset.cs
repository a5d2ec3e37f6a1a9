using PeftSharp.Data;

namespace PeftSharp.Video;

/// <summary>What the model sees of a clip: T sampled frames, the short side resized, a square crop, normalised.</summary>
public sealed record ClipTransform
{
    /// <summary>Crop side in pixels (the model's img_size).</summary>
    public int Size { get; init; } = 224;
    /// <summary>The frames' short side is resized to this before cropping (VideoMAE's short_side_size); 0: Size.</summary>
    public int ShortSide { get; init; }
    public Normalization Normalization { get; init; } = Normalization.Inception;
    /// <summary>Temporal views at test time (clips along the video, VideoMAE's test_num_segment).</summary>
    public int TestClips { get; init; } = 1;
    /// <summary>Spatial crops at test time along the long side (VideoMAE's test_num_crop: 3 = left/centre/right).</summary>
    public int TestCrops { get; init; } = 1;
    /// <summary>Random horizontal flip in training. Off by default: it swaps left and right, which Something-Something
    /// (and the motion task here) labels differently.</summary>
    public bool Flip { get; init; }

    public int ResizedShortSide => ShortSide > 0 ? ShortSide : Size;
    public int Views => TestClips * TestCrops;
}

/// <summary>
/// Labelled clips from a list file, read as [C, T, H, W] float arrays. Reading is thread-safe (workers of
/// <see cref="ClipLoader"/> call it in parallel). <see cref="ShuffleFrames"/> permutes each clip's sampled frames
/// (a fixed permutation per clip): the frame-shuffle control, where a model that uses time must lose accuracy.
/// </summary>
public sealed class ClipDataset
{
    public ClipDataset(IReadOnlyList<ClipEntry> entries, int numClasses, ClipSampler sampler, ClipTransform transform, string source)
    {
        Entries = entries;
        NumClasses = numClasses;
        Sampler = sampler;
        Transform = transform;
        Source = source;
        foreach (var e in entries)
        {
            if (e.Label < 0 || e.Label >= numClasses)
                throw new PeftSharpException($"{source}:{e.LineNumber}: clip '{e.Path}': label {e.Label} is outside 0..{numClasses - 1}");
            if (e.ListedFrames is int n) sampler.Check(n, e.Path);
        }
    }

    public static ClipDataset FromList(string listFile, string root, int numClasses, ClipSampler sampler, ClipTransform transform) =>
        new(ClipList.Read(listFile, root), numClasses, sampler, transform, listFile);

    public IReadOnlyList<ClipEntry> Entries { get; }
    public int Count => Entries.Count;
    public int NumClasses { get; }
    public ClipSampler Sampler { get; }
    public ClipTransform Transform { get; }
    public string Source { get; }
    public bool ShuffleFrames { get; init; }
    /// <summary>Where decoded frames are kept between reads (null: decode every read).</summary>
    public FrameCache? Cache { get; init; } = FrameCache.Shared;

    public int Label(int index) => Entries[index].Label;

    /// <summary>Checks every video file of the list is readable (rawframe folders are checked when listed), so a
    /// broken file is an error before training starts rather than in the middle of an epoch.</summary>
    public void CheckVideoFiles()
    {
        foreach (var e in Entries.Where(e => e.IsVideoFile)) FfmpegReader.Check(e.Path);
    }

    /// <summary>One training view (random frames and crop) of clip <paramref name="index"/>, [C, T, S, S].</summary>
    public float[] ReadTrain(int index, Random rng)
    {
        var reader = Open(index);
        var frames = Sampler.Train(reader.FrameCount, rng);
        bool flip = Transform.Flip && rng.NextDouble() < 0.5;
        return Render(reader, Order(index, frames), (w, h, side) => (rng.NextDouble() * (w - side), rng.NextDouble() * (h - side)), flip);
    }

    /// <summary>Every test view of clip <paramref name="index"/> (temporal clips × spatial crops), [V, C, T, S, S] flat.</summary>
    public float[] ReadTest(int index)
    {
        var reader = Open(index);
        int views = Transform.Views, perView = 3 * Sampler.Frames * Transform.Size * Transform.Size;
        var result = new float[views * perView];
        for (int clip = 0; clip < Transform.TestClips; clip++)
        {
            var frames = Order(index, Sampler.Test(reader.FrameCount, clip, Transform.TestClips));
            for (int crop = 0; crop < Transform.TestCrops; crop++)
            {
                int c = crop, crops = Transform.TestCrops;
                var view = Render(reader, frames, (w, h, side) =>
                {
                    double along = crops == 1 ? 0.5 : (double)c / (crops - 1);
                    return w >= h ? ((w - side) * along, (h - side) / 2) : ((w - side) / 2, (h - side) * along);
                }, flip: false);
                view.CopyTo(result, (clip * crops + crop) * perView);
            }
        }
        return result;
    }

    IClipReader Open(int index)
    {
        var e = Entries[index];
        IClipReader Decode() => e.IsVideoFile ? new FfmpegReader(e.Path) : new FrameFolderReader(e.Path, e.ListedFrames);
        var reader = Cache is null ? Decode() : Cache.Reader(e.Path, e.ListedFrames, Decode);
        Sampler.Check(reader.FrameCount, e.Path);
        return reader;
    }

    int[] Order(int index, int[] frames)
    {
        if (!ShuffleFrames) return frames;
        var rng = new Random(unchecked(index * 7919 + 17));
        var shuffled = (int[])frames.Clone();
        // A derangement-free shuffle is enough: the control asks whether order matters, not whether every frame moved.
        rng.Shuffle(shuffled);
        return shuffled;
    }

    /// <summary>Frames → [C, T, S, S]: the same crop box for every frame (chosen from the first frame's size).</summary>
    float[] Render(IClipReader reader, int[] frames, Func<double, double, double, (double X, double Y)> place, bool flip)
    {
        int size = Transform.Size, t = frames.Length;
        var result = new float[3 * t * size * size];
        var mean = Transform.Normalization.Mean;
        var std = Transform.Normalization.Std;
        (double X, double Y, double Side)? box = null;
        for (int f = 0; f < t; f++)
        {
            var frame = reader.Frame(frames[f]);
            if (box is null)
            {
                double scale = (double)Transform.ResizedShortSide / Math.Min(frame.Width, frame.Height);
                double side = Math.Min(size / scale, Math.Min(frame.Width, frame.Height));
                var (x, y) = place(frame.Width, frame.Height, side);
                box = (x, y, side);
            }
            var (x0, y0, s) = box.Value;
            var pixels = frame.Width == size && frame.Height == size && s == size && !flip
                ? frame.Pixels
                : PixelOps.CropResize(frame.Pixels, frame.Width, frame.Height, 3, x0, y0, s, size, flip);
            int plane = size * size;
            for (int p = 0; p < plane; p++)
                for (int c = 0; c < 3; c++)
                    result[(c * t + f) * plane + p] = (pixels[p * 3 + c] / 255f - mean[c]) / std[c];
        }
        return result;
    }
}
