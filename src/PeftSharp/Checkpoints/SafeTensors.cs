using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using TorchSharp;

namespace PeftSharp.Checkpoints;

/// <summary>
/// Reading and writing the safetensors format: an 8-byte little-endian header length, a UTF-8 JSON header
/// (tensor name → dtype, shape, data_offsets; optional "__metadata__" of strings), then the raw little-endian
/// tensor data.
/// </summary>
public static class SafeTensors
{
    /// <summary>Reads every tensor of <paramref name="path"/>, in data-offset order.</summary>
    public static Dictionary<string, torch.Tensor> Load(string path, torch.Device? device = null)
    {
        using var file = SafeTensorsFile.Open(path);
        var tensors = new Dictionary<string, torch.Tensor>(file.Tensors.Count, StringComparer.Ordinal);
        try
        {
            foreach (var info in file.Tensors)
                tensors.Add(info.Name, file.ReadTensor(info.Name, device));
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return tensors;
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> in the order given. The file is written to <c>path + ".tmp"</c> and renamed
    /// over <paramref name="path"/> only once complete, so an interrupted save never leaves a partial file.
    /// Tensors may be on any device and non-contiguous; they are not modified.
    /// Bad arguments (a duplicate or reserved name, a dtype safetensors lacks) are <see cref="ArgumentException"/>s;
    /// a file that cannot be written is a <see cref="PeftSharpException"/>.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        var layout = Layout(list);
        CheckMetadata(metadata);
        byte[] header = SafeTensorsHeader.Write(layout, metadata);

        string temporary = path + ".tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                stream.Write(prefix);
                stream.Write(header);
                foreach (var (_, tensor) in list) WriteData(stream, tensor);
                stream.Flush(flushToDisk: true); // the rename must not become durable before the data
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw SafeTensorsHeader.Error(path, $"cannot write the file ({e.Message.ReplaceLineEndings(" ")})");
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>Assigns consecutive data offsets in the given order, checking names and dtypes before anything is written.</summary>
    static List<SafeTensorInfo> Layout(List<KeyValuePair<string, torch.Tensor>> tensors)
    {
        var layout = new List<SafeTensorInfo>(tensors.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var (name, tensor) in tensors)
        {
            if (name is null) throw new ArgumentException("a tensor name is null", nameof(tensors));
            if (tensor is null) throw new ArgumentException($"tensor {SafeTensorsHeader.Quote(name)} is null", nameof(tensors));
            if (name == SafeTensorsHeader.MetadataKey)
                throw new ArgumentException($"\"{SafeTensorsHeader.MetadataKey}\" is reserved for metadata and cannot name a tensor", nameof(tensors));
            if (!names.Add(name))
                throw new ArgumentException($"tensor name {SafeTensorsHeader.Quote(name)} appears more than once", nameof(tensors));
            var dtype = FromTorch(tensor.dtype);
            long bytes = checked(tensor.numel() * ElementSize(dtype));
            layout.Add(new SafeTensorInfo(name, dtype, tensor.shape, offset, offset + bytes));
            offset += bytes;
        }
        return layout;
    }

    static void CheckMetadata(IReadOnlyDictionary<string, string>? metadata)
    {
        if (metadata is null) return;
        foreach (var (key, value) in metadata)
            if (value is null) throw new ArgumentException($"metadata value {SafeTensorsHeader.Quote(key)} is null", nameof(metadata));
    }

    /// <summary>Writes one tensor's bytes, going through a CPU, contiguous copy only when the tensor is not one already.</summary>
    static void WriteData(Stream stream, torch.Tensor tensor)
    {
        using var scope = torch.NewDisposeScope(); // disposes the copies made here, never the caller's tensor
        var t = tensor.device_type == DeviceType.CPU ? tensor : tensor.cpu();
        if (!t.is_contiguous()) t = t.contiguous();
        TensorBytes.WriteTo(t, stream);
    }

    static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* the original error matters more */ }
    }

    public static SafeTensorDType FromTorch(torch.ScalarType t) => t switch
    {
        torch.ScalarType.Float64 => SafeTensorDType.F64,
        torch.ScalarType.Float32 => SafeTensorDType.F32,
        torch.ScalarType.Float16 => SafeTensorDType.F16,
        torch.ScalarType.BFloat16 => SafeTensorDType.BF16,
        torch.ScalarType.Int64 => SafeTensorDType.I64,
        torch.ScalarType.Int32 => SafeTensorDType.I32,
        torch.ScalarType.Int16 => SafeTensorDType.I16,
        torch.ScalarType.Int8 => SafeTensorDType.I8,
        torch.ScalarType.Byte => SafeTensorDType.U8,
        torch.ScalarType.Bool => SafeTensorDType.BOOL,
        _ => throw new ArgumentException($"safetensors has no dtype for torch {t}", nameof(t)),
    };

    public static torch.ScalarType ToTorch(SafeTensorDType t) => t switch
    {
        SafeTensorDType.F64 => torch.ScalarType.Float64,
        SafeTensorDType.F32 => torch.ScalarType.Float32,
        SafeTensorDType.F16 => torch.ScalarType.Float16,
        SafeTensorDType.BF16 => torch.ScalarType.BFloat16,
        SafeTensorDType.I64 => torch.ScalarType.Int64,
        SafeTensorDType.I32 => torch.ScalarType.Int32,
        SafeTensorDType.I16 => torch.ScalarType.Int16,
        SafeTensorDType.I8 => torch.ScalarType.Int8,
        SafeTensorDType.U8 => torch.ScalarType.Byte,
        SafeTensorDType.BOOL => torch.ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, null),
    };

    /// <summary>Bytes per element; BOOL is one byte.</summary>
    public static int ElementSize(SafeTensorDType t) => t switch
    {
        SafeTensorDType.F64 or SafeTensorDType.I64 => 8,
        SafeTensorDType.F32 or SafeTensorDType.I32 => 4,
        SafeTensorDType.F16 or SafeTensorDType.BF16 or SafeTensorDType.I16 => 2,
        SafeTensorDType.I8 or SafeTensorDType.U8 or SafeTensorDType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, null),
    };

    /// <summary>
    /// Parses a dtype string exactly as the format spells it ("F32"). Unlike Enum.TryParse this rejects other
    /// casings, numbers and comma lists.
    /// </summary>
    public static bool TryParseDType(string text, out SafeTensorDType dtype)
    {
        foreach (var candidate in Enum.GetValues<SafeTensorDType>())
        {
            if (candidate.ToString() == text)
            {
                dtype = candidate;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>A listing of the file for the CLI's inspect verb: one line per tensor, then the metadata.</summary>
    public static string Describe(SafeTensorsFile f)
    {
        ArgumentNullException.ThrowIfNull(f);
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        long totalBytes = f.Tensors.Sum(t => t.ByteLength), totalElements = f.Tensors.Sum(t => t.ElementCount);
        sb.AppendLine(inv, $"{f.Path}: {f.Tensors.Count} tensors, {totalElements:N0} elements, {totalBytes:N0} bytes");

        var rows = f.Tensors.Select(t => (t.Name, DType: t.DType.ToString(), Shape: SafeTensorsHeader.FormatShape(t.Shape), Bytes: t.ByteLength.ToString("N0", inv))).ToList();
        int nameWidth = Math.Max(4, rows.Select(r => r.Name.Length).DefaultIfEmpty(0).Max());
        int shapeWidth = Math.Max(5, rows.Select(r => r.Shape.Length).DefaultIfEmpty(0).Max());
        int bytesWidth = Math.Max(5, rows.Select(r => r.Bytes.Length).DefaultIfEmpty(0).Max());
        sb.AppendLine($"  {"name".PadRight(nameWidth)}  dtype  {"shape".PadRight(shapeWidth)}  {"bytes".PadLeft(bytesWidth)}");
        foreach (var r in rows)
            sb.AppendLine($"  {r.Name.PadRight(nameWidth)}  {r.DType,-5}  {r.Shape.PadRight(shapeWidth)}  {r.Bytes.PadLeft(bytesWidth)}");

        if (f.Metadata.Count == 0)
        {
            sb.AppendLine("metadata: none");
        }
        else
        {
            sb.AppendLine(inv, $"metadata ({f.Metadata.Count}):");
            foreach (var (key, value) in f.Metadata)
                sb.AppendLine($"  {key}: {value.ReplaceLineEndings(" ")}");
        }
        return sb.ToString();
    }
}
