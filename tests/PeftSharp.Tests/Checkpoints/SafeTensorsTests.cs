using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using PeftSharp.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    static readonly string TestData = Path.Combine(AppContext.BaseDirectory, "TestData");
    static readonly string VitTiny = Path.Combine(TestData, "vit_tiny_timm.safetensors");
    static readonly string VitTinyIo = Path.Combine(TestData, "vit_tiny_timm_io.safetensors");

    readonly string _dir = Path.Combine(Path.GetTempPath(), "peftsharp-safetensors-" + Guid.NewGuid().ToString("N"));

    public SafeTensorsTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string TempPath(string name = "t.safetensors") => Path.Combine(_dir, name);

    // ---------------------------------------------------------------- round trips

    /// <summary>One tensor of every dtype with values that only survive a correct byte copy.</summary>
    static List<KeyValuePair<string, Tensor>> EveryDType() =>
    [
        new("f64", tensor(new[] { 1.5, -2.25, Math.PI, double.MaxValue, double.Epsilon, -0.0 }).reshape(2, 3)),
        new("f32_scalar", tensor(3.5f)),
        new("f16", tensor(new[] { 1f, -2f, 0.5f, 65504f }).to_type(ScalarType.Float16)),
        new("bf16", tensor(new[] { 1f, -3f, 0.15625f, 256f }).to_type(ScalarType.BFloat16).reshape(2, 2)),
        new("i64", tensor(new[] { long.MinValue, -1L, long.MaxValue })),
        new("i32_empty", zeros(2, 0, 3, dtype: ScalarType.Int32)),
        new("i16", tensor(new short[] { short.MinValue, 7, short.MaxValue })),
        new("i8", tensor(new sbyte[] { -128, -1, 0, 127 }).reshape(1, 4)),
        new("u8", tensor(new byte[] { 0, 1, 200, 255 })),
        new("bool", tensor(new[] { true, false, false, true, true })),
    ];

    [Fact]
    public void Round_trip_preserves_every_dtype_shape_value_and_metadata()
    {
        var original = EveryDType();
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "quote \" backslash \\ héllo\nline" };
        string path = TempPath();
        SafeTensors.Save(path, original, metadata);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(original.Select(kv => kv.Key), file.Tensors.Select(t => t.Name)); // order kept
        Assert.Equal(metadata.ToList(), file.Metadata.ToList());
        foreach (var (name, expected) in original)
        {
            var info = file.Info(name);
            Assert.Equal(SafeTensors.FromTorch(expected.dtype), info.DType);
            Assert.Equal(expected.shape, info.Shape);
            using var actual = file.ReadTensor(name);
            Assert.Equal(expected.dtype, actual.dtype);
            Assert.Equal(expected.shape, actual.shape);
            Assert.Equal(expected.bytes.ToArray(), actual.bytes.ToArray());
        }

        var loaded = SafeTensors.Load(path);
        Assert.Equal(original.Select(kv => kv.Key), loaded.Keys);
        Assert.Equal(new[] { 1.5, -2.25, Math.PI, double.MaxValue, double.Epsilon, -0.0 }, loaded["f64"].data<double>().ToArray());
        Assert.Equal(0, loaded["f32_scalar"].dim());
        Assert.Equal(3.5f, loaded["f32_scalar"].item<float>());
        Assert.Equal(new[] { 1f, -2f, 0.5f, 65504f }, loaded["f16"].to_type(ScalarType.Float32).data<float>().ToArray());
        Assert.Equal(new[] { 1f, -3f, 0.15625f, 256f }, loaded["bf16"].to_type(ScalarType.Float32).data<float>().ToArray());
        Assert.Equal(new[] { long.MinValue, -1L, long.MaxValue }, loaded["i64"].data<long>().ToArray());
        Assert.Equal(new long[] { 2, 0, 3 }, loaded["i32_empty"].shape);
        Assert.Equal(new short[] { short.MinValue, 7, short.MaxValue }, loaded["i16"].data<short>().ToArray());
        Assert.Equal(new sbyte[] { -128, -1, 0, 127 }, loaded["i8"].data<sbyte>().ToArray());
        Assert.Equal(new byte[] { 0, 1, 200, 255 }, loaded["u8"].data<byte>().ToArray());
        Assert.Equal(new[] { true, false, false, true, true }, loaded["bool"].data<bool>().ToArray());
    }

    [Fact]
    public void Saved_header_uses_the_format_s_dtype_names_offsets_and_padding()
    {
        string path = TempPath();
        SafeTensors.Save(path, EveryDType(), new Dictionary<string, string> { ["k"] = "v" });
        byte[] bytes = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var root = doc.RootElement;

        var expected = new (string Name, string DType, long[] Shape, long Bytes)[]
        {
            ("f64", "F64", [2, 3], 48), ("f32_scalar", "F32", [], 4), ("f16", "F16", [4], 8), ("bf16", "BF16", [2, 2], 8),
            ("i64", "I64", [3], 24), ("i32_empty", "I32", [2, 0, 3], 0), ("i16", "I16", [3], 6), ("i8", "I8", [1, 4], 4),
            ("u8", "U8", [4], 4), ("bool", "BOOL", [5], 5),
        };
        long offset = 0;
        foreach (var (name, dtype, shape, size) in expected)
        {
            var entry = root.GetProperty(name);
            Assert.Equal(dtype, entry.GetProperty("dtype").GetString());
            Assert.Equal(shape, entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal(new[] { offset, offset + size }, entry.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()));
            offset += size;
        }
        Assert.Equal("v", root.GetProperty("__metadata__").GetProperty("k").GetString());
        Assert.Equal(8 + (long)n + offset, bytes.LongLength); // no trailing bytes
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.EndsWith("}", header.TrimEnd(' '));
        Assert.True(header.Length - header.TrimEnd(' ').Length < 8);
    }

    [Fact]
    public void Save_writes_non_contiguous_and_offset_views_and_leaves_them_unchanged()
    {
        using var matrix = arange(12, dtype: ScalarType.Float32).reshape(3, 4);
        using var transposed = matrix.t();          // non-contiguous
        using var row = matrix[1];                  // contiguous view at a storage offset
        using var grad = ones(2, requires_grad: true);
        string path = TempPath();
        SafeTensors.Save(path, [new("t", transposed), new("row", row), new("grad", grad)]);

        var loaded = SafeTensors.Load(path);
        Assert.Equal(new long[] { 4, 3 }, loaded["t"].shape);
        Assert.Equal(new float[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }, loaded["t"].data<float>().ToArray());
        Assert.Equal(new float[] { 4, 5, 6, 7 }, loaded["row"].data<float>().ToArray());
        Assert.Equal(new float[] { 1, 1 }, loaded["grad"].data<float>().ToArray());
        Assert.False(transposed.is_contiguous());
        Assert.Equal(5f, transposed[1, 1].item<float>());
    }

    [Fact]
    public void Save_replaces_an_existing_file_and_leaves_no_temporary()
    {
        string path = TempPath();
        SafeTensors.Save(path, [new("a", ones(3))]);
        SafeTensors.Save(path, [new("b", tensor(new[] { 7L, 7L }))]);
        Assert.False(File.Exists(path + ".tmp"));
        var loaded = SafeTensors.Load(path);
        Assert.Equal(new[] { "b" }, loaded.Keys);
        Assert.Equal(new[] { 7L, 7L }, loaded["b"].data<long>().ToArray());
    }

    [Fact]
    public void Failed_save_leaves_the_existing_file_untouched()
    {
        string path = TempPath();
        SafeTensors.Save(path, [new("a", ones(3))]);
        byte[] before = File.ReadAllBytes(path);
        using var complex = zeros(2, dtype: ScalarType.ComplexFloat32);
        Assert.Throws<ArgumentException>(() => SafeTensors.Save(path, [new("a", ones(1)), new("c", complex)]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.False(File.Exists(path + ".tmp"));
    }

    [Fact]
    public void Save_into_a_missing_directory_is_a_one_line_error_naming_the_path()
    {
        string path = Path.Combine(_dir, "no-such-dir", "x.safetensors");
        var e = Assert.Throws<PeftSharpException>(() => SafeTensors.Save(path, [new("a", ones(1))]));
        Assert.StartsWith(path + ": cannot write the file", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("__metadata__")]
    [InlineData("dup")]
    public void Save_rejects_a_reserved_or_repeated_name(string second)
    {
        var e = Assert.Throws<ArgumentException>(() => SafeTensors.Save(TempPath(), [new("dup", ones(1)), new(second, ones(1))]));
        Assert.Contains(second == "dup" ? "more than once" : "reserved", e.Message);
        Assert.False(File.Exists(TempPath()));
    }

    [Theory]
    [InlineData(ScalarType.Float64, SafeTensorDType.F64, 8)]
    [InlineData(ScalarType.Float32, SafeTensorDType.F32, 4)]
    [InlineData(ScalarType.Float16, SafeTensorDType.F16, 2)]
    [InlineData(ScalarType.BFloat16, SafeTensorDType.BF16, 2)]
    [InlineData(ScalarType.Int64, SafeTensorDType.I64, 8)]
    [InlineData(ScalarType.Int32, SafeTensorDType.I32, 4)]
    [InlineData(ScalarType.Int16, SafeTensorDType.I16, 2)]
    [InlineData(ScalarType.Int8, SafeTensorDType.I8, 1)]
    [InlineData(ScalarType.Byte, SafeTensorDType.U8, 1)]
    [InlineData(ScalarType.Bool, SafeTensorDType.BOOL, 1)]
    public void DType_maps_both_ways_and_matches_torch_element_size(ScalarType torchType, SafeTensorDType dtype, int size)
    {
        Assert.Equal(dtype, SafeTensors.FromTorch(torchType));
        Assert.Equal(torchType, SafeTensors.ToTorch(dtype));
        Assert.Equal(size, SafeTensors.ElementSize(dtype));
        using var t = empty(1, dtype: torchType);
        Assert.Equal(size, t.element_size());
        Assert.True(SafeTensors.TryParseDType(dtype.ToString(), out var parsed) && parsed == dtype);
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("1")]
    [InlineData("F32, I8")]
    [InlineData("U16")]
    public void TryParseDType_accepts_only_exact_format_names(string text) =>
        Assert.False(SafeTensors.TryParseDType(text, out _));

    [Fact]
    public void TensorBytes_copies_in_chunks_when_a_tensor_exceeds_the_chunk_size()
    {
        var values = Enumerable.Range(0, 37).Select(i => i * 1.25f - 3f).ToArray();
        byte[] raw = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, raw, 0, raw.Length);
        using var t = empty(37);
        var pinned = GCHandle.Alloc(raw, GCHandleType.Pinned);
        try
        {
            TensorBytes.CopyFrom(pinned.AddrOfPinnedObject(), raw.Length, t, chunkBytes: 10); // 2 floats a chunk
        }
        finally
        {
            pinned.Free();
        }
        Assert.Equal(values, t.data<float>().ToArray());

        using var written = new MemoryStream();
        TensorBytes.WriteTo(t, written, chunkBytes: 12);
        Assert.Equal(raw, written.ToArray());
    }

    [Fact]
    public void TensorBytes_refuses_a_size_mismatch()
    {
        using var t = empty(4);
        Assert.Throws<ArgumentException>(() => TensorBytes.CopyFrom(IntPtr.Zero, 15, t));
    }

    // ---------------------------------------------------------------- files written by Python

    [Fact]
    public void Reads_the_python_written_vit_checkpoint()
    {
        using var file = SafeTensorsFile.Open(VitTiny);
        Assert.Equal(VitTiny, file.Path);
        Assert.Equal(32, file.Tensors.Count);
        Assert.Equal("cls_token", file.Tensors[0].Name);
        Assert.Equal("head.bias", file.Tensors[^1].Name);
        Assert.True(file.Tensors.Zip(file.Tensors.Skip(1)).All(p => p.First.End == p.Second.Begin));

        var info = file.Info("pos_embed");
        Assert.Equal(SafeTensorDType.F32, info.DType);
        Assert.Equal(new long[] { 1, 17, 64 }, info.Shape);
        Assert.Equal((256L, 4608L), (info.Begin, info.End));
        using var pos = file.ReadTensor("pos_embed");
        Assert.Equal(new long[] { 1, 17, 64 }, pos.shape);
        var values = pos.data<float>().ToArray();
        // Expected values read from the file with Python's struct module.
        Assert.Equal(new[] { -0.022521711885929108f, -0.034134648740291595f, 0.032318778336048126f }, values[..3]);
        Assert.Equal(0.035155583173036575f, values[^1]);
        Assert.Equal(-1.2330974414944649, values.Sum(v => (double)v), 1e-9);

        using var headBias = file.ReadTensor("head.bias");
        Assert.Equal(new[] { 0.027458539232611656f, 0.004222941119223833f, -0.02429862879216671f }, headBias.data<float>().ToArray()[..3]);

        Assert.Equal(6, file.Metadata.Count);
        using var config = JsonDocument.Parse(file.Metadata["config"]);
        Assert.Equal(64, config.RootElement.GetProperty("embed_dim").GetInt32());
        Assert.Equal("20240601", file.Metadata["seed"]);
    }

    [Fact]
    public void Reads_the_python_written_io_file_with_int64_and_scalars()
    {
        var tensors = SafeTensors.Load(VitTinyIo);
        Assert.Equal(new[] { "input", "logits", "pre_logits", "tokens", "labels", "loss", "grad_qkv0", "grad_head", "grad_head_bias" }, tensors.Keys);

        Assert.Equal(ScalarType.Int64, tensors["labels"].dtype);
        Assert.Equal(new long[] { 2 }, tensors["labels"].shape);
        Assert.Equal(new[] { 1L, 7L }, tensors["labels"].data<long>().ToArray());

        Assert.Equal(ScalarType.Float32, tensors["loss"].dtype);
        Assert.Empty(tensors["loss"].shape);
        Assert.Equal(2.2221646308898926f, tensors["loss"].item<float>());

        Assert.Equal(new long[] { 2, 3, 32, 32 }, tensors["input"].shape);
        Assert.Equal(0.8354476094245911f, tensors["input"][0, 0, 0, 0].item<float>());
        Assert.Equal(-0.32130908966064453f, tensors["logits"][0, 0].item<float>());
    }

    [Theory]
    [InlineData("vit_tiny_timm.safetensors")]
    [InlineData("vit_tiny_timm_io.safetensors")]
    public void Resaving_a_python_file_reproduces_it_byte_for_byte(string name)
    {
        string source = Path.Combine(TestData, name), copy = TempPath(name);
        using (var file = SafeTensorsFile.Open(source))
        {
            var tensors = file.Tensors.Select(t => KeyValuePair.Create(t.Name, file.ReadTensor(t.Name))).ToList();
            SafeTensors.Save(copy, tensors, file.Metadata);
        }
        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(copy));

        var original = SafeTensors.Load(source);
        var reread = SafeTensors.Load(copy);
        Assert.Equal(original.Keys, reread.Keys);
        foreach (var (key, t) in original)
        {
            Assert.Equal(t.dtype, reread[key].dtype);
            Assert.Equal(t.shape, reread[key].shape);
            Assert.Equal(t.bytes.ToArray(), reread[key].bytes.ToArray());
        }
    }

    [Fact]
    public void Describe_lists_tensors_and_metadata()
    {
        using var file = SafeTensorsFile.Open(VitTiny);
        string text = SafeTensors.Describe(file);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith($"{VitTiny}: 32 tensors, 114,250 elements, 457,000 bytes", lines[0]);
        var pos = lines.Single(l => l.TrimStart().StartsWith("pos_embed "));
        Assert.Matches(@"^\s+pos_embed\s+F32\s+\[1, 17, 64\]\s+4,352$", pos.TrimEnd('\r'));
        Assert.Equal(1 + 1 + 32 + 1 + 6, lines.Length); // summary, column titles, tensors, "metadata (6):", entries
        Assert.Contains(lines, l => l.StartsWith("  model_class: timm.models.vision_transformer.VisionTransformer"));
    }

    [Fact]
    public void Unknown_tensor_name_is_a_one_line_error_naming_file_and_tensor()
    {
        using var file = SafeTensorsFile.Open(VitTiny);
        Assert.False(file.Contains("pos_embedding"));
        Assert.True(file.Contains("pos_embed"));
        var e = Assert.Throws<PeftSharpException>(() => file.ReadTensor("pos_embedding"));
        Assert.Equal($"{VitTiny}: no tensor named \"pos_embedding\" (the file has 32)", e.Message);
        Assert.Throws<PeftSharpException>(() => file.Info("pos_embedding"));
    }

    [Fact]
    public void Reading_after_dispose_throws()
    {
        var file = SafeTensorsFile.Open(VitTiny);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadTensor("pos_embed"));
    }

    [Fact]
    public void Header_only_file_with_no_tensors_is_valid()
    {
        string path = Write(Craft("{\"__metadata__\":{\"a\":\"b\"}}", 0));
        using var file = SafeTensorsFile.Open(path);
        Assert.Empty(file.Tensors);
        Assert.Equal("b", file.Metadata["a"]);
        Assert.Contains("metadata (1):", SafeTensors.Describe(file));
    }

    [Fact]
    public void Zero_byte_tensors_may_share_an_offset_and_missing_metadata_is_empty()
    {
        string path = Write(Craft("""{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"I64","shape":[0,5],"data_offsets":[0,0]}}""", 4));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(new[] { "e", "b" }, file.Tensors.Select(t => t.Name));
        Assert.Empty(file.Metadata);
        using var e = file.ReadTensor("e");
        Assert.Equal(new long[] { 0, 5 }, e.shape);
        Assert.Equal(ScalarType.Int64, e.dtype);
    }

    // ---------------------------------------------------------------- malformed files

    const string ValidEntry = """{"dtype":"F32","shape":[2],"data_offsets":[0,8]}""";

    /// <summary>A header whose tensor "w" is valid (8 bytes), followed by <paramref name="more"/> members.</summary>
    static string WithW(string more) => "{\"w\":" + ValidEntry + more + "}";

    /// <summary>A file with the given header (its length announced truthfully unless overridden) and zeroed data.</summary>
    static byte[] Craft(string header, int dataBytes, ulong? announcedLength = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, announcedLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        return bytes;
    }

    string Write(byte[] bytes, string name = "bad.safetensors")
    {
        string path = TempPath(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Opening (and loading) must fail with one line "&lt;path&gt;: ..." containing every fragment.</summary>
    void AssertRejected(byte[] bytes, params string[] fragments) => AssertRejectedPath(Write(bytes), fragments);

    static void AssertRejectedPath(string path, params string[] fragments)
    {
        var e = Assert.Throws<PeftSharpException>(() => SafeTensorsFile.Open(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
        Assert.Equal(e.Message, Assert.Throws<PeftSharpException>(() => SafeTensors.Load(path)).Message);
    }

    [Fact]
    public void Missing_file() => AssertRejectedPath(Path.Combine(_dir, "absent.safetensors"), "file not found");

    [Fact]
    public void Missing_directory() => AssertRejectedPath(Path.Combine(_dir, "absent", "x.safetensors"), "file not found");

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void File_shorter_than_the_length_prefix(int length) =>
        AssertRejected(new byte[length], "truncated", $"{length} bytes");

    [Fact]
    public void Header_length_beyond_the_end_of_the_file() =>
        AssertRejected(Craft("{}", 0, announcedLength: 100), "header length 100", "past the end of the file (10 bytes)");

    [Fact]
    public void Header_length_absurdly_large() =>
        AssertRejected(Craft("{}", 0, announcedLength: 100_000_001), "header length 100000001", "limit");

    [Fact]
    public void Header_length_with_the_top_bit_set() =>
        AssertRejected(Craft("{}", 0, announcedLength: ulong.MaxValue), $"header length {ulong.MaxValue}", "limit");

    [Fact]
    public void Header_not_valid_json() =>
        AssertRejected(Craft("""{"a": {"dtype": "F32",""", 0), "header is not valid JSON");

    [Fact]
    public void Header_not_utf8()
    {
        byte[] bytes = Craft("{\"ab\":1}", 0);
        bytes[10] = 0xff; // the 'a': a lone 0xff is never valid UTF-8
        AssertRejected(bytes, "header is not valid UTF-8 (bad byte at header offset 2)");
    }

    [Fact]
    public void Header_with_a_lone_surrogate_escape() =>
        AssertRejected(Craft("""{"\ud800":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}""", 0), "header is not valid JSON");

    [Fact]
    public void Header_not_a_json_object() =>
        AssertRejected(Craft("[1,2]", 0), "header must be a JSON object", "found an array");

    [Fact]
    public void Entry_not_an_object() =>
        AssertRejected(Craft("""{"w":[1,2]}""", 0), "tensor \"w\"", "entry must be a JSON object", "found an array");

    [Theory]
    [InlineData("dtype", """{"shape":[2],"data_offsets":[0,8]}""")]
    [InlineData("shape", """{"dtype":"F32","data_offsets":[0,8]}""")]
    [InlineData("data_offsets", """{"dtype":"F32","shape":[2]}""")]
    public void Missing_field(string field, string entry) =>
        AssertRejected(Craft("{\"w\":" + entry + "}", 8), "tensor \"w\"", $"missing \"{field}\"");

    [Fact]
    public void Dtype_not_a_string() =>
        AssertRejected(Craft("""{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}""", 8), "tensor \"w\"", "dtype must be a string", "found a number");

    [Fact]
    public void Shape_not_an_array() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}""", 8), "tensor \"w\"", "shape must be an array", "found a string");

    [Fact]
    public void Shape_element_not_an_integer() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8), "tensor \"w\"", "shape[0] must be a non-negative integer, found 2.5");

    [Fact]
    public void Data_offsets_not_an_array() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2],"data_offsets":{"begin":0}}}""", 8), "tensor \"w\"", "data_offsets must be an array", "found an object");

    [Fact]
    public void Data_offsets_not_a_pair() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}""", 8), "tensor \"w\"", "data_offsets must be [begin, end], found 3 numbers");

    [Fact]
    public void Data_offsets_not_integers() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2],"data_offsets":["0",8]}}""", 8), "tensor \"w\"", "data_offsets[0] must be a non-negative integer, found \"0\"");

    [Fact]
    public void Negative_data_offset() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}""", 8), "tensor \"w\"", "data_offsets[0] must be a non-negative integer, found -8");

    [Theory]
    [InlineData("F128")]
    [InlineData("f32")]
    [InlineData("U16")]
    public void Unknown_dtype(string dtype) =>
        AssertRejected(Craft("{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
            "tensor \"w\"", $"unsupported dtype \"{dtype}\"", "expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");

    [Fact]
    public void Negative_dimension() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}}""", 8), "tensor \"w\"", "shape[1] must be a non-negative integer, found -1");

    [Fact]
    public void Shape_whose_size_overflows() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8), "tensor \"w\"", "too large");

    [Fact]
    public void Data_offsets_beyond_the_data_section() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 8), "tensor \"w\"", "data_offsets [4, 12]", "past the end of the data section (8 bytes)");

    [Fact]
    public void Data_offsets_begin_after_end() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}""", 8), "tensor \"w\"", "data_offsets [8, 0] has begin after end");

    [Fact]
    public void Overlapping_tensors() =>
        AssertRejected(Craft("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12),
            "tensors \"a\" [0, 8] and \"b\" [4, 12] overlap");

    [Fact]
    public void Byte_span_not_matching_shape_and_dtype() =>
        AssertRejected(Craft("""{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8), "tensor \"w\"", "span 8 bytes but F32 [3] needs 12");

    [Fact]
    public void Metadata_value_not_a_string() =>
        AssertRejected(Craft(WithW(""","__metadata__":{"epochs":3}"""), 8), "__metadata__ value \"epochs\" must be a string", "found a number");

    [Fact]
    public void Metadata_not_an_object() =>
        AssertRejected(Craft(WithW(",\"__metadata__\":\"x\""), 8), "__metadata__ must be a JSON object", "found a string");

    [Fact]
    public void Tensor_listed_twice() =>
        AssertRejected(Craft(WithW(",\"w\":" + ValidEntry), 8), "header lists \"w\" more than once");

    // Holes are rejected, like the reference implementation (see SafeTensorsHeader.CheckLayout).
    [Fact]
    public void Gap_between_tensors_is_rejected() =>
        AssertRejected(Craft("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12),
            "4 unused bytes before tensor \"b\"", "without holes");

    [Fact]
    public void Data_not_starting_at_offset_zero_is_rejected() =>
        AssertRejected(Craft("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8), "4 unused bytes before tensor \"a\"");

    [Fact]
    public void Trailing_bytes_after_the_last_tensor_are_rejected() =>
        AssertRejected(Craft(WithW(""), 11), "3 trailing bytes after the last tensor");

    [Fact]
    public void Names_with_control_characters_stay_on_one_line() =>
        AssertRejected(Craft("""{"bad\nname":{"dtype":"X","shape":[],"data_offsets":[0,0]}}""", 0), "tensor \"bad\\u000aname\"", "unsupported dtype \"X\"");
}
