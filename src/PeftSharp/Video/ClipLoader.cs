using PeftSharp.Data;
using System.Collections.Concurrent;
using System.Diagnostics;
using static TorchSharp.torch;

namespace PeftSharp.Video;

/// <summary>A batch of clips: [B, C, T, H, W] for training, [B·V, C, T, H, W] with V test views per clip for evaluation.</summary>
public sealed class ClipBatch : IDisposable
{
    public ClipBatch(Tensor clips, Tensor labels, int[] indices, int views)
    {
        Clips = clips;
        Labels = labels;
        Indices = indices;
        Views = views;
    }

    public Tensor Clips { get; }
    public Tensor Labels { get; }
    public int[] Indices { get; }
    public int Views { get; }
    public int Size => Indices.Length;

    public void Dispose()
    {
        Clips.Dispose();
        Labels.Dispose();
    }
}

/// <summary>
/// Batches of clips decoded ahead of the training thread: a producer task decodes the next batches (clips of a batch
/// in parallel) into a bounded queue while the model trains on the current one, so decoding costs the training
/// thread only the time it waits on an empty queue (<see cref="WaitSeconds"/>, reported per step by the trainer).
/// </summary>
public sealed class ClipLoader
{
    public ClipLoader(ClipDataset dataset, int batchSize, bool train, int seed, int prefetch = 3, int workers = 2)
    {
        Dataset = dataset;
        BatchSize = batchSize;
        Train = train;
        Seed = seed;
        Prefetch = prefetch;
        Workers = workers;
    }

    public ClipDataset Dataset { get; }
    public int BatchSize { get; }
    /// <summary>Training: shuffled each epoch, random frames and crops, one view; else in order, every test view.</summary>
    public bool Train { get; }
    public int Seed { get; }
    public int Prefetch { get; }
    public int Workers { get; }
    public int BatchesPerEpoch => (Dataset.Count + BatchSize - 1) / BatchSize;

    /// <summary>Seconds the consumer spent waiting for a batch, summed over every epoch so far.</summary>
    public double WaitSeconds { get; private set; }
    public int BatchesServed { get; private set; }

    /// <summary>Clip order of an epoch (a permutation from the seed and epoch in training).</summary>
    public int[] EpochOrder(int epoch)
    {
        var order = Enumerable.Range(0, Dataset.Count).ToArray();
        if (Train) new Random(SuiteRng.GeneratorSeed(Seed, epoch, -1)).Shuffle(order);
        return order;
    }

    public IEnumerable<ClipBatch> Epoch(int epoch)
    {
        var order = EpochOrder(epoch);
        int views = Train ? 1 : Dataset.Transform.Views;
        using var queue = new BlockingCollection<(float[] Data, long[] Labels, int[] Indices)>(Math.Max(1, Prefetch));
        using var cancel = new CancellationTokenSource();
        Exception? failure = null;
        var producer = Task.Run(() =>
        {
            try
            {
                for (int b = 0; b < BatchesPerEpoch && !cancel.IsCancellationRequested; b++)
                {
                    var indices = order[(b * BatchSize)..Math.Min((b + 1) * BatchSize, order.Length)];
                    var parts = new float[indices.Length][];
                    Parallel.For(0, indices.Length, new ParallelOptions { MaxDegreeOfParallelism = Workers }, i =>
                    {
                        // Per-clip randomness from (seed, epoch, index): the same clip views whatever the thread timing.
                        var rng = new Random(SuiteRng.GeneratorSeed(Seed, epoch, indices[i]));
                        parts[i] = Train ? Dataset.ReadTrain(indices[i], rng) : Dataset.ReadTest(indices[i]);
                    });
                    var data = new float[parts.Sum(p => p.Length)];
                    int offset = 0;
                    foreach (var p in parts)
                    {
                        p.CopyTo(data, offset);
                        offset += p.Length;
                    }
                    queue.Add((data, indices.Select(i => (long)Dataset.Label(i)).ToArray(), indices), cancel.Token);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { failure = e is AggregateException a ? a.Flatten().InnerExceptions[0] : e; }
            finally { queue.CompleteAdding(); }
        });
        try
        {
            int t = Dataset.Sampler.Frames, s = Dataset.Transform.Size;
            while (true)
            {
                var watch = Stopwatch.StartNew();
                bool got = queue.TryTake(out var item, Timeout.Infinite);
                WaitSeconds += watch.Elapsed.TotalSeconds;
                if (!got) break;
                BatchesServed++;
                var clips = tensor(item.Data, new long[] { item.Indices.Length * views, 3, t, s, s });
                yield return new ClipBatch(clips, tensor(item.Labels), item.Indices, views);
            }
            if (failure is not null)
            {
                if (failure is PeftSharpException) throw failure;
                throw new PeftSharpException($"{Dataset.Source}: reading clips failed: {failure.Message}", failure);
            }
        }
        finally
        {
            cancel.Cancel();
            try { producer.Wait(); } catch (AggregateException) { }
        }
    }
}
