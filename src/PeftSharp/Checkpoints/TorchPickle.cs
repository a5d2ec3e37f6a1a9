using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Checkpoints;

/// <summary>A Python object the reader does not model (argparse.Namespace, an optimizer's state): its class and the
/// state it was built with, kept so a checkpoint's other entries still load.</summary>
public sealed record PickledObject(string Class, IReadOnlyList<object?> Arguments)
{
    public object? State { get; set; }
}

/// <summary>
/// Reads what <c>torch.save</c> writes (PyTorch ≥ 1.6's zip format): <c>ARCHIVE/data.pkl</c>, a pickle whose tensors
/// point at raw little-endian storages <c>ARCHIVE/data/KEY</c>. Only the pickle opcodes <c>torch.save</c> emits for
/// state dicts and the checkpoints around them (protocol 2, dicts, lists, tuples, numbers, strings, globals rebuilt by
/// REDUCE/NEWOBJ/BUILD) are read, and only tensors are rebuilt; no Python code runs, so a pickle that asks for any
/// other callable gets a <see cref="PickledObject"/>, never an effect. Dicts are <c>Dictionary&lt;object, object?&gt;</c>
/// in insertion order, lists <c>List&lt;object?&gt;</c>, tuples <c>object?[]</c>, tensors <see cref="Tensor"/>.
/// </summary>
public static class TorchPickle
{
    /// <summary>Whether a file is a zip archive (torch.save's format since PyTorch 1.6).</summary>
    public static bool IsTorchZip(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return stream.Read(magic) == 4 && magic.SequenceEqual("PK\u0003\u0004"u8);
    }

    public static object? Load(string path)
    {
        if (!File.Exists(path)) throw new PeftSharpException($"{path}: checkpoint file not found");
        if (!IsTorchZip(path))
            throw new PeftSharpException($"{path}: not a torch.save zip archive (PyTorch before 1.6 wrote another format: re-save it with a recent torch.save, or convert it to safetensors)");
        using var zip = ZipFile.OpenRead(path);
        var pickle = zip.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
            ?? throw new PeftSharpException($"{path}: no ARCHIVE/data.pkl inside (not a torch.save file)");
        string archive = pickle.FullName[..^"data.pkl".Length];
        using var data = new MemoryStream();
        using (var s = pickle.Open()) s.CopyTo(data);
        return new Reader(path, zip, archive, data.ToArray()).Run();
    }

    /// <summary>A stored tensor as the pickle describes it, built once every storage of the archive is at hand.</summary>
    sealed class Reader(string path, ZipArchive zip, string archive, byte[] bytes)
    {
        static readonly object Mark = new();
        readonly Stack<object?> stack = new();
        readonly Stack<Stack<object?>> marks = new();
        readonly Dictionary<long, object?> memo = new();
        readonly Dictionary<string, Tensor> storages = new();
        int pos;

        PeftSharpException Error(string what) => new($"{path}: {what} (at byte {pos} of {archive}data.pkl)");

        public object? Run()
        {
            try { return Loop(); }
            catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidOperationException)
            {
                throw Error("truncated or malformed pickle");
            }
        }

        object? Loop()
        {
            while (true)
            {
                byte op = bytes[pos++];
                switch (op)
                {
                    case 0x80: pos++; break;                                           // PROTO
                    case 0x95: pos += 8; break;                                        // FRAME
                    case (byte)'.': return stack.Pop();                                // STOP
                    case (byte)'(': marks.Push(new Stack<object?>(stack.Reverse())); stack.Clear(); break;   // MARK
                    case (byte)'}': stack.Push(new Dictionary<object, object?>()); break;
                    case (byte)']': stack.Push(new List<object?>()); break;
                    case (byte)')': stack.Push(Array.Empty<object?>()); break;
                    case (byte)'N': stack.Push(null); break;
                    case 0x88: stack.Push(true); break;
                    case 0x89: stack.Push(false); break;
                    case (byte)'K': stack.Push((long)bytes[pos++]); break;             // BININT1
                    case (byte)'M': stack.Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
                    case (byte)'J': stack.Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
                    case 0x8a: stack.Push(Long(Take(bytes[pos++]))); break;           // LONG1
                    case (byte)'G': stack.Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;
                    case (byte)'X': stack.Push(Encoding.UTF8.GetString(Take(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))); break;
                    case 0x8c: stack.Push(Encoding.UTF8.GetString(Take(bytes[pos++]))); break;   // SHORT_BINUNICODE
                    case (byte)'T': stack.Push(Encoding.Latin1.GetString(Take(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))); break;
                    case (byte)'U': stack.Push(Encoding.Latin1.GetString(Take(bytes[pos++]))); break;
                    case (byte)'B': stack.Push(Take(BinaryPrimitives.ReadInt32LittleEndian(Take(4))).ToArray()); break;
                    case (byte)'C': stack.Push(Take(bytes[pos++]).ToArray()); break;
                    case (byte)'q': memo[bytes[pos++]] = stack.Peek(); break;        // BINPUT
                    case (byte)'r': memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = stack.Peek(); break;
                    case 0x94: memo[memo.Count] = stack.Peek(); break;                 // MEMOIZE
                    case (byte)'h': stack.Push(Memo(bytes[pos++])); break;            // BINGET
                    case (byte)'j': stack.Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;
                    case (byte)'0': stack.Pop(); break;                                // POP
                    case (byte)'1': PopMark(); break;                                  // POP_MARK
                    case (byte)'2': stack.Push(stack.Peek()); break;                   // DUP
                    case (byte)'t': stack.Push(PopMark().ToArray()); break;            // TUPLE
                    case 0x85: stack.Push(new[] { stack.Pop() }); break;
                    case 0x86: { var b = stack.Pop(); var a = stack.Pop(); stack.Push(new[] { a, b }); break; }
                    case 0x87: { var c = stack.Pop(); var b = stack.Pop(); var a = stack.Pop(); stack.Push(new[] { a, b, c }); break; }
                    case (byte)'l': stack.Push(PopMark()); break;                      // LIST
                    case (byte)'a': { var v = stack.Pop(); AsList(stack.Peek()).Add(v); break; }
                    case (byte)'e': { var items = PopMark(); AsList(stack.Peek()).AddRange(items); break; }
                    case (byte)'d': { var items = PopMark(); var d = new Dictionary<object, object?>(); SetItems(d, items); stack.Push(d); break; }
                    case (byte)'s': { var v = stack.Pop(); var k = stack.Pop(); SetItems(stack.Peek(), [k, v]); break; }
                    case (byte)'u': { var items = PopMark(); SetItems(stack.Peek(), items); break; }
                    case (byte)'c': stack.Push(new Global(Line() + " " + Line())); break;   // GLOBAL "module\nname\n"
                    case 0x93: { var name = (string)stack.Pop()!; var module = (string)stack.Pop()!; stack.Push(new Global(module + " " + name)); break; }
                    case (byte)'R': { var args = (object?[])stack.Pop()!; stack.Push(Call((Global)stack.Pop()!, args)); break; }   // REDUCE
                    case 0x81: { var args = (object?[])stack.Pop()!; stack.Push(Call((Global)stack.Pop()!, args)); break; }        // NEWOBJ
                    case (byte)'b': { var state = stack.Pop(); Build(stack.Peek(), state); break; }
                    case (byte)'Q': stack.Push(Persistent(stack.Pop())); break;       // BINPERSID
                    default: throw Error($"pickle opcode 0x{op:x2} is not one torch.save writes for state dicts");
                }
            }
        }

        ReadOnlySpan<byte> Take(int n)
        {
            var span = bytes.AsSpan(pos, n);
            pos += n;
            return span;
        }

        string Line()
        {
            int end = Array.IndexOf(bytes, (byte)'\n', pos);
            var text = Encoding.ASCII.GetString(bytes, pos, end - pos);
            pos = end + 1;
            return text;
        }

        static object Long(ReadOnlySpan<byte> little) => little.Length == 0 ? 0L : (long)new BigInteger(little, isUnsigned: false, isBigEndian: false);

        object? Memo(long key) => memo.TryGetValue(key, out var v) ? v : throw Error($"memo entry {key} read before it was written");

        List<object?> PopMark()
        {
            var items = stack.Reverse().ToList();
            stack.Clear();
            foreach (var item in marks.Pop().Reverse()) stack.Push(item);
            return items;
        }

        List<object?> AsList(object? target) => target as List<object?> ?? throw Error($"append to a {target?.GetType().Name ?? "None"}, not a list");

        void SetItems(object? target, IReadOnlyList<object?> items)
        {
            if (target is PickledObject o) { o.State ??= new Dictionary<object, object?>(); target = o.State; }
            var dict = target as Dictionary<object, object?> ?? throw Error($"setitem on a {target?.GetType().Name ?? "None"}, not a dict");
            for (int i = 0; i + 1 < items.Count; i += 2) dict[items[i] ?? "None"] = items[i + 1];
        }

        void Build(object? target, object? state)
        {
            // A state dict's BUILD carries its _metadata (module versions): not needed to load tensors.
            if (target is PickledObject o) o.State = state;
        }

        sealed record Global(string Name);

        object? Call(Global callable, object?[] args) => callable.Name switch
        {
            "collections OrderedDict" => new Dictionary<object, object?>(),
            "torch._utils _rebuild_tensor_v2" => RebuildTensor(args),
            "torch._utils _rebuild_parameter" => args[0],
            _ => new PickledObject(callable.Name, args),
        };

        /// <summary>BINPERSID ('storage', StorageType, key, location, numel): the archive's data/KEY as a flat tensor.</summary>
        object Persistent(object? id)
        {
            if (id is not object?[] { Length: >= 5 } t || t[0] as string != "storage" || t[1] is not Global type || t[2] is not string key)
                throw Error("a persistent id that is not a torch storage");
            if (storages.TryGetValue(key, out var known)) return known;
            var dtype = StorageType(type.Name);
            var entry = zip.GetEntry(archive + "data/" + key) ?? throw Error($"storage '{key}' is missing from the archive");
            var raw = new byte[entry.Length];
            using (var s = entry.Open()) s.ReadExactly(raw);
            long elementBytes = torch.empty(0, dtype).ElementSize;
            var storage = torch.empty(raw.Length / elementBytes, dtype);
            var handle = GCHandle.Alloc(raw, GCHandleType.Pinned);
            try { TensorBytes.CopyFrom(handle.AddrOfPinnedObject(), raw.Length, storage); }
            finally { handle.Free(); }
            storages[key] = storage;
            return storage;
        }

        ScalarType StorageType(string name) => name switch
        {
            "torch FloatStorage" => ScalarType.Float32,
            "torch DoubleStorage" => ScalarType.Float64,
            "torch HalfStorage" => ScalarType.Float16,
            "torch BFloat16Storage" => ScalarType.BFloat16,
            "torch LongStorage" => ScalarType.Int64,
            "torch IntStorage" => ScalarType.Int32,
            "torch ShortStorage" => ScalarType.Int16,
            "torch CharStorage" => ScalarType.Int8,
            "torch ByteStorage" => ScalarType.Byte,
            "torch BoolStorage" => ScalarType.Bool,
            _ => throw Error($"storage type '{name.Replace(' ', '.')}' is not supported"),
        };

        /// <summary>_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks): a copy of the strided view.</summary>
        Tensor RebuildTensor(object?[] args)
        {
            if (args.Length < 4 || args[0] is not Tensor storage || args[1] is not long offset || args[2] is not object?[] size || args[3] is not object?[] stride)
                throw Error("a tensor rebuilt from arguments other than (storage, offset, size, stride)");
            using var view = storage.as_strided(size.Select(Convert.ToInt64).ToArray(), stride.Select(Convert.ToInt64).ToArray(), offset);
            return view.contiguous().clone();
        }
    }

    /// <summary>The state dict inside a checkpoint: the top-level dict, or the one under 'module', 'model' or
    /// 'state_dict' (VideoMAE's and timm's training scripts), its names without a DistributedDataParallel 'module.'
    /// prefix. Everything else in the file (optimizer, args) is dropped.</summary>
    public static Dictionary<string, Tensor> StateDict(string path) => StateDict(path, Load(path));

    /// <summary>The state dict of a checkpoint already loaded (<paramref name="root"/>, what <see cref="Load"/> returned).</summary>
    public static Dictionary<string, Tensor> StateDict(string path, object? root)
    {
        var dict = root as Dictionary<object, object?> ?? throw new PeftSharpException($"{path}: the checkpoint is a {Describe(root)}, not a dict of tensors");
        foreach (var key in new[] { "module", "model", "state_dict" })
            if (!dict.Values.OfType<Tensor>().Any() && dict.TryGetValue(key, out var inner) && inner is Dictionary<object, object?> d)
            {
                dict = d;
                break;
            }
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (key, value) in dict)
        {
            if (key is not string name) throw new PeftSharpException($"{path}: state dict key {key} is not a string");
            if (value is not Tensor t)
                throw new PeftSharpException($"{path}: entry '{name}' is a {Describe(value)}, not a tensor (known wrappers: 'module', 'model', 'state_dict')");
            tensors[name.StartsWith("module.", StringComparison.Ordinal) ? name["module.".Length..] : name] = t;
        }
        if (tensors.Count == 0) throw new PeftSharpException($"{path}: no tensors in the checkpoint's state dict (top-level keys: {string.Join(", ", dict.Keys.Take(8))})");
        return tensors;
    }

    static string Describe(object? value) => value switch
    {
        null => "None",
        PickledObject o => o.Class.Replace(' ', '.'),
        Dictionary<object, object?> => "dict",
        List<object?> => "list",
        object?[] => "tuple",
        _ => value.GetType().Name,
    };
}
