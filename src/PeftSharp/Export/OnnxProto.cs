using Google.Protobuf;

namespace PeftSharp.Export;

/// <summary>
/// A protobuf message written field by field from onnx.proto's field numbers (onnx is proto2: repeated scalars are
/// written unpacked, which every reader accepts). Enough of the wire format for models: varints, floats, strings,
/// bytes and nested messages.
/// </summary>
sealed class ProtoMessage
{
    readonly MemoryStream buffer = new();
    readonly CodedOutputStream output;

    public ProtoMessage() => output = new CodedOutputStream(buffer, leaveOpen: true);

    public ProtoMessage Int(int field, long value)
    {
        output.WriteTag(field, WireFormat.WireType.Varint);
        output.WriteInt64(value);
        return this;
    }

    public ProtoMessage Ints(int field, IEnumerable<long> values)
    {
        foreach (var v in values) Int(field, v);
        return this;
    }

    public ProtoMessage Float(int field, float value)
    {
        output.WriteTag(field, WireFormat.WireType.Fixed32);
        output.WriteFloat(value);
        return this;
    }

    public ProtoMessage String(int field, string value)
    {
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteString(value);
        return this;
    }

    public ProtoMessage Bytes(int field, byte[] value)
    {
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(value));
        return this;
    }

    public ProtoMessage Message(int field, ProtoMessage message) => Bytes(field, message.ToArray());

    public byte[] ToArray()
    {
        output.Flush();
        return buffer.ToArray();
    }
}

/// <summary>The onnx.proto messages and field numbers the exporter writes.</summary>
static class Onnx
{
    public const int FloatType = 1, Int64Type = 7;           // TensorProto.DataType
    public const int AttrFloat = 1, AttrInt = 2, AttrInts = 7; // AttributeProto.AttributeType

    /// <summary>TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian).</summary>
    public static ProtoMessage Tensor(string name, long[] dims, int dataType, byte[] raw) =>
        new ProtoMessage().Ints(1, dims).Int(2, dataType).String(8, name).Bytes(9, raw);

    /// <summary>ValueInfoProto: name (1), type (2: TypeProto.tensor_type (1): elem_type (1), shape (2: dim (1):
    /// dim_value (1) or dim_param (2))).</summary>
    public static ProtoMessage ValueInfo(string name, IEnumerable<object> shape, int elemType)
    {
        var tensorShape = new ProtoMessage();
        foreach (var d in shape)
            tensorShape.Message(1, d is string param ? new ProtoMessage().String(2, param) : new ProtoMessage().Int(1, Convert.ToInt64(d)));
        var tensorType = new ProtoMessage().Int(1, elemType).Message(2, tensorShape);
        return new ProtoMessage().String(1, name).Message(2, new ProtoMessage().Message(1, tensorType));
    }

    /// <summary>AttributeProto: name (1), f (2), i (3), ints (8), type (20).</summary>
    public static ProtoMessage Attribute(string name, object value) => value switch
    {
        float f => new ProtoMessage().String(1, name).Float(2, f).Int(20, AttrFloat),
        int or long => new ProtoMessage().String(1, name).Int(3, Convert.ToInt64(value)).Int(20, AttrInt),
        long[] ints => new ProtoMessage().String(1, name).Ints(8, ints).Int(20, AttrInts),
        _ => throw new ArgumentException($"attribute {name}: unsupported value {value}"),
    };

    /// <summary>NodeProto: input (1), output (2), name (3), op_type (4), attribute (5).</summary>
    public static ProtoMessage Node(string op, string name, IEnumerable<string> inputs, IEnumerable<string> outputs, IEnumerable<(string, object)> attributes)
    {
        var node = new ProtoMessage();
        foreach (var i in inputs) node.String(1, i);
        foreach (var o in outputs) node.String(2, o);
        node.String(3, name).String(4, op);
        foreach (var (n, v) in attributes) node.Message(5, Attribute(n, v));
        return node;
    }
}
