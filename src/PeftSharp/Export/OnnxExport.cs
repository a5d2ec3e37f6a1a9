using System.Globalization;
using System.Runtime.InteropServices;
using PeftSharp.Checkpoints;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Export;

/// <summary>
/// Writes a plain (merged) ViT as an ONNX model for ONNX Runtime and other ONNX tools: opset 17, input
/// "pixel_values" [batch, 3, S, S] (preprocessed as the model records), output "logits" [batch, classes], a dynamic
/// batch axis. The graph is built from the model's timm state dict, op by op as timm computes it (LayerNormalization,
/// fused qkv split by head, exact erf GELU or QuickGELU, layer scale, class-token or average pooling), so a model
/// that still carries tuner modules (an unmerged adapter) is refused rather than exported without them.
/// </summary>
public static class OnnxExport
{
    public const int Opset = 17;
    public const string InputName = "pixel_values", OutputName = "logits";
    const int IrVersion = 8;   // the IR version of opset 17

    /// <summary>Exports <paramref name="model"/> to <paramref name="path"/>; <paramref name="metadata"/> lands in the
    /// model's metadata_props (preprocessing, class names).</summary>
    public static void Save(VisionTransformer model, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(model, path, metadata, OutputName);

    static void Save(VisionTransformer model, string path, IReadOnlyDictionary<string, string>? metadata, string outputName)
    {
        var c = model.Config;
        if (c.DynamicImgSize)
            throw new PeftSharpException($"{path}: a ViT with dynamic_img_size resamples its position table per input size, which the exporter does not express; export it at its img_size");
        // The model's own tensors (not copies): read, never disposed here.
        var state = StateDictLoader.StateDict(model);
        using (var plain = new VisionTransformer(c)) RequirePlain(state, plain, path, "a plain ViT");
        var graph = new GraphBuilder(state);
        string logits = Build(graph, c);
        byte[] bytes = graph.ToModel("peftsharp-vit", (InputName, Onnx.FloatType, ["batch", c.InChans, c.ImgSize, c.ImgSize]),
                                     (outputName, ["batch", c.NumClasses > 0 ? c.NumClasses : c.EmbedDim]), logits, IrVersion, Opset, metadata);
        Write(path, bytes);
    }

    /// <summary>CLIP's image tower: input "pixel_values" [batch, 3, S, S], output "image_embeds" [batch, embed]
    /// (projected, not normalised: <see cref="ClipModel.EncodeImage"/>).</summary>
    public static void SaveClipImageTower(ClipModel model, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(model.visual, path, metadata, ImageEmbedsName);

    public const string TextInputName = "input_ids", TextOutputName = "text_embeds", ImageEmbedsName = "image_embeds";

    /// <summary>CLIP's text tower: input "input_ids" int64 [batch, context] (<see cref="Text.ClipTokenizer"/>'s ids,
    /// padded to the context length), output "text_embeds" [batch, embed] (projected, not normalised:
    /// <see cref="ClipModel.EncodeText"/>). The causal mask is a constant; the pooled token is each row's largest id
    /// (the end of text), as open_clip pools.</summary>
    public static void SaveClipTextTower(ClipModel model, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var c = model.Config;
        var state = StateDictLoader.StateDict(model.text);
        using (var plain = new TextTransformer(c.Text, c.EmbedDim, c.QuickGelu)) RequirePlain(state, plain, path, "a plain CLIP text tower");
        var graph = new GraphBuilder(state);
        string embeds = BuildText(graph, c);
        byte[] bytes = graph.ToModel("peftsharp-clip-text", (TextInputName, Onnx.Int64Type, ["batch", c.Text.ContextLength]),
                                     (TextOutputName, ["batch", c.EmbedDim]), embeds, IrVersion, Opset, metadata);
        Write(path, bytes);
    }

    /// <summary>Refuses a module with tensors its plain architecture lacks (an unmerged adapter's).</summary>
    static void RequirePlain(IReadOnlyDictionary<string, Tensor> state, nn.Module plain, string path, string what)
    {
        var expected = StateDictLoader.StateDict(plain).Keys.ToHashSet();
        var unknown = state.Keys.Where(k => !expected.Contains(k)).ToList();
        if (unknown.Count > 0)
            throw new PeftSharpException($"{path}: the model has tensors {what} does not ({string.Join(", ", unknown.Take(4))}{(unknown.Count > 4 ? ", …" : "")}): merge its adapter first, or export a mergeable method");
    }

    static void Write(string path, byte[] bytes)
    {
        string tmp = path + ".tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, path, overwrite: true);
    }

    static string Build(GraphBuilder g, VitConfig c)
    {
        // Patch embedding: Conv2d stride = kernel = patch, then [B, D, G, G] -> [B, N, D].
        var convInputs = new List<string> { InputName, g.Weight("patch_embed.proj.weight") };
        if (g.Has("patch_embed.proj.bias")) convInputs.Add(g.Weight("patch_embed.proj.bias"));
        string x = g.Op("Conv", convInputs, ("kernel_shape", new long[] { c.PatchSize, c.PatchSize }), ("strides", new long[] { c.PatchSize, c.PatchSize }));
        x = g.Op("Reshape", [x, g.Int64s("flat", [0, c.EmbedDim, -1])]);
        x = g.Op("Transpose", [x], ("perm", new long[] { 0, 2, 1 }));
        x = PositionEmbed(g, c, x);
        if (c.PreNorm) x = g.LayerNorm(x, "norm_pre", c.NormEps);
        for (int i = 0; i < c.Depth; i++) x = Block(g, x, $"blocks.{i}", c.NumHeads, c.EmbedDim, c.NormEps, c.ActLayer == "quick_gelu", null);
        if (c.FinalNorm && !c.UseFcNorm) x = g.LayerNorm(x, "norm", c.NormEps);
        x = c.GlobalPool == "avg"
            ? g.Op("ReduceMean", [g.Op("Slice", [x, g.Int64s("patch_start", [c.NumPrefixTokens]), g.Int64s("end", [long.MaxValue]), g.Int64s("axis1", [1])])],
                   ("axes", new long[] { 1 }), ("keepdims", 0L))
            : g.Op("Gather", [x, g.ScalarInt64("zero", 0)], ("axis", 1L));
        if (c.FinalNorm && c.UseFcNorm) x = g.LayerNorm(x, "fc_norm", c.NormEps);
        return c.NumClasses > 0 ? g.Linear(x, "head") : x;
    }

    static string PositionEmbed(GraphBuilder g, VitConfig c, string patches)
    {
        var prefix = new List<string>();
        if (c.NumPrefixTokens > 0)
        {
            // The batch size comes from the input: Expand the learned tokens to [B, n, D].
            string batch = g.Op("Gather", [g.Op("Shape", [patches]), g.Int64s("zero_1d", [0])], ("axis", 0L));
            foreach (var (name, count) in new[] { ("cls_token", c.ClassToken ? 1 : 0), ("reg_token", c.RegTokens) }.Where(t => t.Item2 > 0))
                prefix.Add(g.Op("Expand", [g.Weight(name), g.Op("Concat", [batch, g.Int64s($"{name}_rest", [count, c.EmbedDim])], ("axis", 0L))]));
        }
        string Joined(string tokens) => prefix.Count == 0 ? tokens : g.Op("Concat", [.. prefix, tokens], ("axis", 1L));
        return c.NoEmbedClass
            ? Joined(g.Op("Add", [patches, g.Weight("pos_embed")]))
            : g.Op("Add", [Joined(patches), g.Weight("pos_embed")]);
    }

    /// <summary>CLIP's text transformer: token and position embeddings, causal blocks, ln_final, the end-of-text token
    /// of each row (its largest id), the projection.</summary>
    static string BuildText(GraphBuilder g, ClipConfig c)
    {
        var t = c.Text;
        string x = g.Op("Gather", [g.Weight("token_embedding.weight"), TextInputName], ("axis", 0L));
        x = g.Op("Add", [x, g.Weight("positional_embedding")]);
        // −inf above the diagonal: a position attends to itself and the ones before it.
        var mask = new float[t.ContextLength * t.ContextLength];
        for (int i = 0; i < t.ContextLength; i++)
            for (int j = i + 1; j < t.ContextLength; j++) mask[i * t.ContextLength + j] = float.NegativeInfinity;
        string causal = g.Floats("causal_mask", [t.ContextLength, t.ContextLength], mask);
        for (int i = 0; i < t.Layers; i++) x = Block(g, x, $"blocks.{i}", t.Heads, t.Width, 1e-5, c.QuickGelu, causal);
        x = g.LayerNorm(x, "ln_final", 1e-5);
        // ArgMax of the ids as floats (exact below 2^24; ArgMax takes the first maximum, as torch's argmax), then that
        // token of each row: GatherElements along the sequence with the index broadcast over the width.
        string eot = g.Op("ArgMax", [g.Op("Cast", [TextInputName], ("to", (long)Onnx.FloatType))], ("axis", 1L), ("keepdims", 1L));
        string batch = g.Op("Gather", [g.Op("Shape", [x]), g.Int64s("zero_1d", [0])], ("axis", 0L));
        string index = g.Op("Expand", [g.Op("Unsqueeze", [eot, g.Int64s("axis2", [2])]), g.Op("Concat", [batch, g.Int64s("one_width", [1, t.Width])], ("axis", 0L))]);
        string pooled = g.Op("Reshape", [g.Op("GatherElements", [x, index], ("axis", 1L)), g.Int64s("rows_width", [-1, t.Width])]);
        return g.Op("MatMul", [pooled, g.Weight("text_projection")]);
    }

    /// <summary>A pre-norm transformer block as timm's (and open_clip's): attention with a fused qkv, optional
    /// additive mask and layer scale, then the MLP with exact GELU or QuickGELU.</summary>
    static string Block(GraphBuilder g, string x, string p, int heads, int width, double eps, bool quickGelu, string? mask)
    {
        int headDim = width / heads;
        string h = g.LayerNorm(x, $"{p}.norm1", eps);
        string qkv = g.Linear(h, $"{p}.attn.qkv");
        // [B, N, 3D] -> [3, B, heads, N, head_dim], timm's layout of the fused projection.
        qkv = g.Op("Transpose", [g.Op("Reshape", [qkv, g.Int64s($"qkv_shape", [0, 0, 3, heads, headDim])])], ("perm", new long[] { 2, 0, 3, 1, 4 }));
        string Part(int i) => g.Op("Gather", [qkv, g.ScalarInt64($"index{i}", i)], ("axis", 0L));
        string q = Part(0), k = Part(1), v = Part(2);
        string scores = g.Op("Mul", [g.Op("MatMul", [q, g.Op("Transpose", [k], ("perm", new long[] { 0, 1, 3, 2 }))]), g.ScalarFloat("attn_scale", (float)(1 / Math.Sqrt(headDim)))]);
        if (mask != null) scores = g.Op("Add", [scores, mask]);
        string attended = g.Op("MatMul", [g.Op("Softmax", [scores], ("axis", -1L)), v]);
        attended = g.Op("Reshape", [g.Op("Transpose", [attended], ("perm", new long[] { 0, 2, 1, 3 })), g.Int64s("tokens_shape", [0, 0, width])]);
        string branch = g.Linear(attended, $"{p}.attn.proj");
        if (g.Has($"{p}.ls1.gamma")) branch = g.Op("Mul", [branch, g.Weight($"{p}.ls1.gamma")]);
        x = g.Op("Add", [x, branch]);

        string m = g.Linear(g.LayerNorm(x, $"{p}.norm2", eps), $"{p}.mlp.fc1");
        m = quickGelu
            ? g.Op("Mul", [m, g.Op("Sigmoid", [g.Op("Mul", [m, g.ScalarFloat("quick_gelu", 1.702f)])])])
            : g.Op("Mul", [g.Op("Mul", [m, g.ScalarFloat("half", 0.5f)]), g.Op("Add", [g.Op("Erf", [g.Op("Mul", [m, g.ScalarFloat("inv_sqrt2", (float)(1 / Math.Sqrt(2)))])]), g.ScalarFloat("one", 1f)])]);
        branch = g.Linear(m, $"{p}.mlp.fc2");
        if (g.Has($"{p}.ls2.gamma")) branch = g.Op("Mul", [branch, g.Weight($"{p}.ls2.gamma")]);
        return g.Op("Add", [x, branch]);
    }

    /// <summary>Nodes and initializers of one graph, with unique value names.</summary>
    sealed class GraphBuilder(IReadOnlyDictionary<string, Tensor> state)
    {
        readonly List<ProtoMessage> nodes = [];
        readonly Dictionary<string, ProtoMessage> initializers = [];
        int counter;

        public bool Has(string key) => state.ContainsKey(key);

        /// <summary>A state-dict tensor as an initializer under its timm name.</summary>
        public string Weight(string key) => Initializer(key, state[key]);

        /// <summary>A Linear layer as MatMul with the transposed weight (an initializer [in, out]) plus its bias.</summary>
        public string Linear(string x, string prefix)
        {
            string weight = $"{prefix}.weight";
            if (!initializers.ContainsKey(weight + "_t"))
            {
                using var transposed = state[weight].t().contiguous();
                Initializer(weight + "_t", transposed);
            }
            string y = Op("MatMul", [x, weight + "_t"]);
            return Has($"{prefix}.bias") ? Op("Add", [y, Weight($"{prefix}.bias")]) : y;
        }

        public string LayerNorm(string x, string prefix, double eps) =>
            Op("LayerNormalization", [x, Weight($"{prefix}.weight"), Weight($"{prefix}.bias")], ("axis", -1L), ("epsilon", (float)eps));

        public string Int64s(string name, long[] values)
        {
            if (!initializers.ContainsKey(name))
                initializers[name] = Onnx.Tensor(name, [values.Length], Onnx.Int64Type, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
            return name;
        }

        public string ScalarInt64(string name, long value)
        {
            if (!initializers.ContainsKey(name))
                initializers[name] = Onnx.Tensor(name, [], Onnx.Int64Type, BitConverter.GetBytes(value));
            return name;
        }

        public string Floats(string name, long[] dims, float[] values)
        {
            if (!initializers.ContainsKey(name))
                initializers[name] = Onnx.Tensor(name, dims, Onnx.FloatType, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
            return name;
        }

        public string ScalarFloat(string name, float value)
        {
            if (!initializers.ContainsKey(name))
                initializers[name] = Onnx.Tensor(name, [], Onnx.FloatType, BitConverter.GetBytes(value));
            return name;
        }

        string Initializer(string name, Tensor value)
        {
            if (initializers.ContainsKey(name)) return name;
            using var cpu = value.detach().to(float32).cpu().contiguous();
            var data = cpu.data<float>().ToArray();
            initializers[name] = Onnx.Tensor(name, cpu.shape, Onnx.FloatType, MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
            return name;
        }

        /// <summary>Adds a node and returns the name of its (single) output.</summary>
        public string Op(string type, IEnumerable<string> inputs, params (string Name, object Value)[] attributes)
        {
            string output = $"{type.ToLowerInvariant()}_{counter++}";
            nodes.Add(Onnx.Node(type, output, inputs, [output], attributes));
            return output;
        }

        /// <summary>ModelProto: ir_version (1), producer_name (2), producer_version (3), graph (7), opset_import (8:
        /// domain (1), version (2)), metadata_props (14: key (1), value (2)); GraphProto: node (1), name (2),
        /// initializer (5), input (11), output (12).</summary>
        public byte[] ToModel(string name, (string Name, int Type, object[] Shape) input, (string Name, object[] Shape) output, string last,
                              int irVersion, int opset, IReadOnlyDictionary<string, string>? metadata)
        {
            var graph = new ProtoMessage();
            foreach (var node in nodes) graph.Message(1, node);
            // The graph's output carries its declared name: an Identity renames the last value.
            graph.Message(1, Onnx.Node("Identity", "output", [last], [output.Name], []));
            graph.String(2, name);
            foreach (var init in initializers.Values) graph.Message(5, init);
            graph.Message(11, Onnx.ValueInfo(input.Name, input.Shape, input.Type));
            graph.Message(12, Onnx.ValueInfo(output.Name, output.Shape, Onnx.FloatType));
            var model = new ProtoMessage().Int(1, irVersion).String(2, "PeftSharp")
                .String(3, typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "0")
                .Message(7, graph)
                .Message(8, new ProtoMessage().String(1, "").Int(2, opset));
            foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
                model.Message(14, new ProtoMessage().String(1, key).String(2, value));
            return model.ToArray();
        }
    }
}
