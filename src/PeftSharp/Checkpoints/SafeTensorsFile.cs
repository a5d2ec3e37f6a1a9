using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using TorchSharp;

namespace PeftSharp.Checkpoints;

/// <summary>
/// An open safetensors file: the header is parsed and validated up front, and the file is memory-mapped so each
/// tensor is copied once, from the mapping straight into a new tensor's storage. Dispose to unmap the file.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    readonly long _dataStart;
    readonly Dictionary<string, SafeTensorInfo> _byName;
    bool _disposed;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensors in data-offset order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart, SafeTensorsHeader.Parsed header)
    {
        Path = path;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        Tensors = header.Tensors;
        Metadata = header.Metadata;
        _byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens and validates <paramref name="path"/>; any problem with the file is a <see cref="PeftSharpException"/>.</summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var stream = OpenStream(path);
        try
        {
            var (header, dataStart) = ReadHeader(path, stream);
            var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            try
            {
                var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                return new SafeTensorsFile(path, map, view, dataStart, header);
            }
            catch
            {
                map.Dispose();
                throw;
            }
        }
        catch (IOException e)
        {
            stream.Dispose();
            throw SafeTensorsHeader.Error(path, $"cannot read the file ({e.Message.ReplaceLineEndings(" ")})");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    static FileStream OpenStream(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw SafeTensorsHeader.Error(path, "file not found");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw SafeTensorsHeader.Error(path, $"cannot open the file ({e.Message.ReplaceLineEndings(" ")})");
        }
    }

    /// <summary>Reads the 8-byte length and the header it announces, checking both against the file's size.</summary>
    static (SafeTensorsHeader.Parsed Header, long DataStart) ReadHeader(string path, FileStream stream)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw SafeTensorsHeader.Error(path, $"truncated: the file is {fileLength} bytes, shorter than the 8-byte header length that starts a safetensors file");

        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > SafeTensorsHeader.MaxHeaderBytes)
            throw SafeTensorsHeader.Error(path, $"header length {headerLength} is over the {SafeTensorsHeader.MaxHeaderBytes}-byte limit; not a safetensors file, or a corrupt one");
        if (headerLength > (ulong)(fileLength - 8))
            throw SafeTensorsHeader.Error(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes); truncated, or not a safetensors file");

        var json = new byte[headerLength];
        stream.ReadExactly(json);
        long dataStart = 8 + (long)headerLength;
        return (SafeTensorsHeader.Parse(path, json, fileLength - dataStart), dataStart);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SafeTensorInfo Info(string name)
    {
        if (_byName.TryGetValue(name, out var info)) return info;
        throw SafeTensorsHeader.Error(Path, $"no tensor named {SafeTensorsHeader.Quote(name)} (the file has {Tensors.Count})");
    }

    /// <summary>A new tensor with the stored dtype and shape, on <paramref name="device"/> (the CPU by default).</summary>
    public torch.Tensor ReadTensor(string name, torch.Device? device = null)
    {
        var info = Info(name);
        var tensor = torch.empty(info.Shape, SafeTensors.ToTorch(info.DType));
        try
        {
            CopyInto(info, tensor);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
        if (device is null || device.type == DeviceType.CPU) return tensor;
        using (tensor) return tensor.to(device);
    }

    /// <summary>
    /// Copies the tensor's bytes from the mapping. The pointer is acquired per read (not held for the file's
    /// lifetime) so a forgotten Dispose still lets the finalizers unmap the file.
    /// </summary>
    unsafe void CopyInto(SafeTensorInfo info, torch.Tensor tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        byte* start = null;
        var handle = _view.SafeMemoryMappedViewHandle;
        handle.AcquirePointer(ref start);
        try
        {
            byte* data = start + _view.PointerOffset + _dataStart + info.Begin;
            TensorBytes.CopyFrom((IntPtr)data, info.ByteLength, tensor);
        }
        finally
        {
            handle.ReleasePointer();
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _view.Dispose();
        _map.Dispose();
    }
}
