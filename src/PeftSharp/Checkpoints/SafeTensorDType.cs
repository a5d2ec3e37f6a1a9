namespace PeftSharp.Checkpoints;

/// <summary>
/// The safetensors element types that TorchSharp can hold. The names are the format's own dtype strings
/// (F32 is written as "F32"); the format's unsigned 16/32/64-bit and FP8 types have no TorchSharp equivalent.
/// </summary>
public enum SafeTensorDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL }

/// <summary>
/// One tensor's header entry. <see cref="Begin"/> and <see cref="End"/> are byte offsets relative to the start of
/// the data section (the byte after the header), End exclusive.
/// </summary>
public sealed record SafeTensorInfo(string Name, SafeTensorDType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;

    /// <summary>Product of the shape; 1 for a 0-d tensor.</summary>
    public long ElementCount => Shape.Aggregate(1L, (n, d) => n * d);
}
