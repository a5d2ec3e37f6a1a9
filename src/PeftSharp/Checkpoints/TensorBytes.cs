using TorchSharp;

namespace PeftSharp.Checkpoints;

/// <summary>
/// Copies raw bytes straight between native memory or a stream and a CPU tensor's own storage, with no managed
/// buffer in between. TorchSharp exposes a tensor's storage only as a <see cref="Span{T}"/> (<c>Tensor.bytes</c>),
/// which cannot exceed int.MaxValue bytes, so larger tensors are handled through 1-D views of at most
/// <c>chunkBytes</c> each.
/// </summary>
public static class TensorBytes
{
    public const int DefaultChunkBytes = 1 << 30;

    delegate void ChunkAction(Span<byte> chunk, long offset);

    /// <summary>Fills <paramref name="destination"/> (CPU, contiguous) from <paramref name="byteCount"/> bytes at <paramref name="source"/>.</summary>
    public static unsafe void CopyFrom(IntPtr source, long byteCount, torch.Tensor destination, int chunkBytes = DefaultChunkBytes)
    {
        long size = ByteSize(destination, nameof(destination));
        if (byteCount != size)
            throw new ArgumentException($"{byteCount} bytes given for a tensor of {size} bytes", nameof(byteCount));
        ForEachChunk(destination, chunkBytes, (chunk, offset) => new ReadOnlySpan<byte>((byte*)source + offset, chunk.Length).CopyTo(chunk));
    }

    /// <summary>Writes the bytes of <paramref name="source"/> (CPU, contiguous) to <paramref name="stream"/>.</summary>
    public static void WriteTo(torch.Tensor source, Stream stream, int chunkBytes = DefaultChunkBytes)
    {
        ByteSize(source, nameof(source));
        ForEachChunk(source, chunkBytes, (chunk, _) => stream.Write(chunk));
    }

    /// <summary>Number of bytes a CPU, contiguous tensor occupies; throws for any other tensor.</summary>
    static long ByteSize(torch.Tensor t, string paramName)
    {
        if (t.device_type != DeviceType.CPU)
            throw new ArgumentException($"tensor is on {t.device}, expected the CPU", paramName);
        if (!t.is_contiguous())
            throw new ArgumentException("tensor is not contiguous", paramName);
        return t.numel() * t.element_size();
    }

    /// <summary>Hands the tensor's storage to <paramref name="action"/> in spans of at most chunkBytes, with their byte offsets.</summary>
    static void ForEachChunk(torch.Tensor t, int chunkBytes, ChunkAction action)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 1);
        long count = t.numel(), elementSize = t.element_size();
        if (count == 0) return;
        if (count * elementSize <= chunkBytes)
        {
            action(t.bytes, 0);
            return;
        }
        long chunkElements = Math.Max(1, chunkBytes / elementSize);
        using var flat = t.reshape(-1); // a view, since t is contiguous
        for (long start = 0; start < count; start += chunkElements)
        {
            using var view = flat.narrow(0, start, Math.Min(chunkElements, count - start));
            action(view.bytes, start * elementSize);
        }
    }
}
