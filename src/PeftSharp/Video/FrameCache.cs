using System.Collections.Concurrent;
using PeftSharp.Data;

namespace PeftSharp.Video;

/// <summary>
/// Decoded frames kept across epochs, test passes and runs, up to a byte budget (the image loader caches decoded images
/// the same way). Without it every epoch decodes every sampled frame again: 8 PNGs per clip cost about as much CPU as a
/// third of the clip's training step on this 2-core machine, taken from the step. Frames past the budget are decoded
/// each time they are read. A clip is keyed by its path and its file or folder's last write time, so a rewritten clip
/// is read afresh. Thread-safe.
/// </summary>
public sealed class FrameCache(long budgetBytes)
{
    /// <summary>The process's cache (512 MB: the built-in tasks' ~30 MB of frames, or ~3 500 frames of 224×224).</summary>
    public static FrameCache Shared { get; } = new(512L << 20);

    readonly ConcurrentDictionary<(string Clip, int Frame), RgbImage> frames = new();
    readonly ConcurrentDictionary<string, int> counts = new();
    long bytes;

    public long BudgetBytes => budgetBytes;
    public long CachedBytes => Interlocked.Read(ref bytes);

    /// <summary>A reader of the clip at <paramref name="path"/> (the first <paramref name="listedFrames"/> frames of a
    /// rawframe folder, as its list says) that serves cached frames and opens the clip (<paramref name="open"/>) only
    /// when a frame or the frame count is not cached.</summary>
    public IClipReader Reader(string path, int? listedFrames, Func<IClipReader> open) =>
        new CachedReader(this, $"{path}\0{listedFrames}\0{Stamp(path)}", open);

    static long Stamp(string path) =>
        (Directory.Exists(path) ? Directory.GetLastWriteTimeUtc(path) : File.GetLastWriteTimeUtc(path)).Ticks;

    /// <summary>Drops every cached frame.</summary>
    public void Clear()
    {
        frames.Clear();
        counts.Clear();
        Interlocked.Exchange(ref bytes, 0);
    }

    sealed class CachedReader(FrameCache cache, string key, Func<IClipReader> open) : IClipReader
    {
        IClipReader? reader;

        IClipReader Inner => reader ??= open();

        public int FrameCount => cache.counts.GetOrAdd(key, _ => Inner.FrameCount);

        public RgbImage Frame(int index)
        {
            if (cache.frames.TryGetValue((key, index), out var image)) return image;
            image = Inner.Frame(index);
            long size = image.Pixels.Length;
            if (Interlocked.Add(ref cache.bytes, size) <= cache.BudgetBytes)
            {
                if (!cache.frames.TryAdd((key, index), image)) Interlocked.Add(ref cache.bytes, -size);   // another thread won
            }
            else Interlocked.Add(ref cache.bytes, -size);
            return image;
        }
    }
}
