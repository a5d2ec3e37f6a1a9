using System.Collections.Concurrent;
using PeftSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Data;

/// <summary>Settings of a <see cref="DataLoader"/>.</summary>
public sealed record DataLoaderOptions
{
    /// <summary>Side of the square model input; every image is bicubic-resized to it once, when cached.</summary>
    public int ImageSize { get; init; } = 224;
    public int BatchSize { get; init; } = 64;
    /// <summary>Shuffle each epoch (training) or keep dataset order (evaluation).</summary>
    public bool Shuffle { get; init; }
    /// <summary>Seeds both the epoch order and the augmentation; epoch e of a seed is always the same.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Leave out the last, smaller batch of an epoch.</summary>
    public bool DropLast { get; init; }
    public Normalization Normalization { get; init; } = Normalization.None;
    /// <summary>Per-batch augmentation (e.g. <see cref="Augmentation.ManyShot"/>), or null for none.</summary>
    public Augmentation? Augmentation { get; init; }
    /// <summary>Antialiased bicubic resize (PIL-like); see <see cref="Transforms.Resize(Tensor,int,bool)"/>.</summary>
    public bool AntialiasResize { get; init; } = true;
    /// <summary>Threads decoding the cache; defaults to the number of cores.</summary>
    public int DecodeThreads { get; init; } = Environment.ProcessorCount;

    internal void Validate()
    {
        if (ImageSize <= 0) throw new PeftSharpException($"DataLoaderOptions.ImageSize: expected a positive size, got {ImageSize}");
        if (BatchSize <= 0) throw new PeftSharpException($"DataLoaderOptions.BatchSize: expected a positive size, got {BatchSize}");
        if (DecodeThreads <= 0) throw new PeftSharpException($"DataLoaderOptions.DecodeThreads: expected a positive count, got {DecodeThreads}");
        ArgumentNullException.ThrowIfNull(Normalization);
    }
}

/// <summary>
/// A mini-batch: Images float32 [B,3,S,S] (augmented and normalised), Labels int64 [B], and the dataset indices of
/// its images (to line predictions up with files). See <see cref="DataLoader"/> for who owns the tensors.
/// </summary>
public sealed class Batch : IDisposable
{
    internal Batch(Tensor images, Tensor labels, int[] indices)
    {
        Images = images;
        Labels = labels;
        Indices = indices;
    }

    public Tensor Images { get; private set; }
    public Tensor Labels { get; private set; }
    public IReadOnlyList<int> Indices { get; }
    public int Size => Indices.Count;

    /// <summary>
    /// Re-creates the tensor handles on the calling thread, so that they join that thread's current dispose scope
    /// (a batch is prepared on a worker thread, where no scope of the caller's is active). The data is not copied.
    /// </summary>
    internal Batch HandOver()
    {
        Tensor images = Images.alias(), labels = Labels.alias();
        Images.Dispose();
        Labels.Dispose();
        Images = images;
        Labels = labels;
        return this;
    }

    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}

/// <summary>
/// Feeds an <see cref="ImageDataset"/> to training or evaluation in mini-batches.
/// <para>The constructor decodes every image once, in parallel, resizes it to S×S and keeps it in a contiguous uint8
/// tensor [N,3,S,S]; epochs never decode again. uint8 rather than float32 because it takes a quarter of the memory
/// (a full CIFAR-100 train set at 224² is 7.5 GB as uint8, 30 GB as float) while costing at most 1/510 per pixel —
/// the same rounding the reference pipelines do, since they resize PIL images, which are 8-bit, before ToTensor.</para>
/// <para>Each epoch's batches are built on a background task one batch ahead, so loading overlaps the caller's
/// compute. Augmentation and normalisation are applied per batch.</para>
/// <para>Ownership: a yielded <see cref="Batch"/> belongs to the caller. Its tensors are handed over on the caller's
/// thread, so they join the caller's dispose scope that is current when the enumerator advances (a scope around the
/// whole foreach, or none); otherwise dispose the batch (<c>using var batch = …</c> inside the loop). Batches the
/// caller never received (an epoch abandoned early) are disposed by the loader. The cache is freed by
/// <see cref="Dispose"/>.</para>
/// <para>Bad images: with a skip-bad dataset, images that fail to decode are left out and listed in
/// <see cref="Skipped"/>; otherwise the first one throws a <see cref="PeftSharpException"/> naming its file and line.</para>
/// </summary>
public sealed class DataLoader : IDisposable
{
    readonly Tensor _cache;         // uint8 [dataset count, 3, S, S]; rows of skipped images stay zero and unused
    readonly int[] _usable;         // dataset indices that decoded
    readonly long[] _labels;        // by dataset index
    readonly List<SkippedEntry> _skipped;
    int _activeEpochs;

    public DataLoader(ImageDataset dataset, DataLoaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        Options = options ?? new DataLoaderOptions();
        Options.Validate();
        Dataset = dataset;
        _labels = Enumerable.Range(0, dataset.Count).Select(i => (long)dataset.Label(i)).ToArray();
        _skipped = new List<SkippedEntry>(dataset.Skipped);
        int size = Options.ImageSize;
        // A normal tensor even when the caller is in inference mode: that mode is per thread, and the pool threads
        // that fill the cache (never in it) cannot write into an inference tensor.
        using (inference_mode(false))
            _cache = zeros(new long[] { dataset.Count, 3, size, size }, ScalarType.Byte);
        _cache.DetachFromDisposeScope(); // lives as long as the loader, whatever scope built it
        try
        {
            _usable = FillCache();
        }
        catch
        {
            _cache.Dispose();
            throw;
        }
    }

    public ImageDataset Dataset { get; }
    public DataLoaderOptions Options { get; }
    /// <summary>Images the loader serves per epoch (the dataset's, less any that failed to decode in skip-bad mode).</summary>
    public int Count => _usable.Length;
    public int BatchesPerEpoch => Options.DropLast ? Count / Options.BatchSize : (Count + Options.BatchSize - 1) / Options.BatchSize;
    /// <summary>The dataset's skipped entries followed by images that failed to decode, in dataset order.</summary>
    public IReadOnlyList<SkippedEntry> Skipped => _skipped;
    /// <summary>Dataset indices of the images served, in dataset order.</summary>
    public IReadOnlyList<int> Indices => _usable;

    /// <summary>Decodes, resizes and stores every image, in parallel; returns the indices that decoded.</summary>
    int[] FillCache()
    {
        var failures = new ConcurrentDictionary<int, SkippedEntry>();
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = Options.DecodeThreads };
        try
        {
            Parallel.For(0, Dataset.Count, parallel, (index, state) =>
            {
                if (Dataset.TryReadImage(index, out var image, out var problem)) StoreResized(index, image!);
                else if (Dataset.SkipBad) failures[index] = problem!;
                else
                {
                    failures[index] = problem!;
                    state.Stop();
                }
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException!).Throw();
        }
        if (!Dataset.SkipBad && !failures.IsEmpty)
            throw new PeftSharpException(failures.MinBy(f => f.Key).Value.Message);
        _skipped.AddRange(failures.OrderBy(f => f.Key).Select(f => f.Value));
        return Enumerable.Range(0, Dataset.Count).Where(i => !failures.ContainsKey(i)).ToArray();
    }

    void StoreResized(int index, RgbImage image)
    {
        // Runs on pool threads: a scope per image frees the temporaries there.
        using var scope = NewDisposeScope();
        var pixels = image.ToFloatTensor();
        var resized = Transforms.Resize(pixels, Options.ImageSize, Options.AntialiasResize);
        var bytes = KeptScalar.Mul_(resized, 255f).round_().to_type(ScalarType.Byte);
        _cache[index].copy_(bytes);
    }

    /// <summary>
    /// The batches of epoch <paramref name="epoch"/> (0-based). Its order (when shuffling) and augmentation depend
    /// only on the seed and the epoch number, so any epoch can be replayed. One epoch may be enumerated at a time.
    /// </summary>
    public IEnumerable<Batch> Epoch(int epoch) =>
        Enumerate(EpochOrder(epoch), new Random(DeriveSeed(Options.Seed, epoch, stream: 1)), Options.BatchSize, Options.DropLast);

    /// <summary>Every image once, in dataset order, without augmentation (normalised as usual): for passes over the
    /// training split that must see the images as they are (a method's pre-pass, <see cref="Tuners.IPrePass"/>).</summary>
    public IEnumerable<Batch> Unaugmented() => Enumerate((int[])_usable.Clone(), null, Options.BatchSize, Options.DropLast);

    /// <summary>The images of <paramref name="indices"/> (dataset indices the loader serves), in that order, in batches
    /// of <paramref name="batchSize"/>, without augmentation: for a pre-pass that batches or splits the training split
    /// its own way (SPT's 32-image batches, NOAH's supernet and search splits). <paramref name="dropLast"/> leaves out
    /// a last, smaller batch.</summary>
    public IEnumerable<Batch> Unaugmented(IReadOnlyList<int> indices, int batchSize, bool dropLast = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        return Enumerate(indices.ToArray(), null, batchSize, dropLast);
    }

    /// <summary>The dataset indices epoch <paramref name="epoch"/> serves, in its batch order (batches are consecutive
    /// runs of <see cref="DataLoaderOptions.BatchSize"/>), for callers that batch cached features the same way.</summary>
    public int[] EpochOrder(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        int[] order = (int[])_usable.Clone();
        if (Options.Shuffle) Shuffle(order, new Random(DeriveSeed(Options.Seed, epoch, stream: 0)));
        return order;
    }

    /// <summary>The label of a dataset index.</summary>
    public long Label(int index) => _labels[index];

    IEnumerable<Batch> Enumerate(int[] order, Random? augmentationRng, int batchSize, bool dropLast)
    {
        if (Interlocked.Increment(ref _activeEpochs) != 1)
        {
            Interlocked.Decrement(ref _activeEpochs);
            throw new InvalidOperationException("another epoch of this DataLoader is being enumerated; finish or dispose it first");
        }
        int batches = dropLast ? order.Length / batchSize : (order.Length + batchSize - 1) / batchSize;
        // Batches are prepared strictly one after another, so the augmentation draws keep their order.
        Task<Batch>? pending = batches > 0 ? Task.Run(() => Prepare(order, 0, augmentationRng, batchSize)) : null;
        try
        {
            for (int b = 0; b < batches; b++)
            {
                var ready = pending!;
                pending = null;
                Batch batch = ready.GetAwaiter().GetResult();
                int next = b + 1;
                if (next < batches) pending = Task.Run(() => Prepare(order, next, augmentationRng, batchSize));
                yield return batch.HandOver();
            }
        }
        finally
        {
            DisposePending(pending);
            Interlocked.Decrement(ref _activeEpochs);
        }
    }

    static void DisposePending(Task<Batch>? pending)
    {
        if (pending == null) return;
        try { pending.GetAwaiter().GetResult().Dispose(); }
        catch (Exception) { /* the caller stopped early; a failure of a batch it never asked for is moot */ }
    }

    Batch Prepare(int[] order, int batchNumber, Random? augmentationRng, int batchSize)
    {
        int start = batchNumber * batchSize;
        int[] indices = order[start..Math.Min(start + batchSize, order.Length)];
        using var scope = NewDisposeScope();
        using var rows = tensor(indices.Select(i => (long)i).ToArray(), ScalarType.Int64);
        // On a pool thread, beside the training step: its numbers go through KeptScalar.
        var images = KeptScalar.Div_(_cache.index_select(0, rows).to_type(ScalarType.Float32), 255f);
        if (Options.Augmentation != null && augmentationRng != null) images = Options.Augmentation.Apply(images, augmentationRng);
        Transforms.NormalizeInPlace(images, Options.Normalization);
        var labels = tensor(indices.Select(i => _labels[i]).ToArray(), ScalarType.Int64);
        return new Batch(images.DetachFromDisposeScope(), labels.DetachFromDisposeScope(), indices);
    }

    static void Shuffle(int[] items, Random rng)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>SplitMix64 of (seed, epoch, stream): independent, platform-stable seeds for System.Random.</summary>
    static int DeriveSeed(int seed, int epoch, int stream)
    {
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)epoch * 0xBF58476D1CE4E5B9UL ^ (ulong)(uint)stream * 0x94D049BB133111EBUL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & 0x7FFFFFFF);
    }

    public void Dispose() => _cache.Dispose();
}
