using PeftSharp.Checkpoints;
using PeftSharp.Models;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Models;

/// <summary>Hugging Face ViT names (separate query/key/value, layernorm_before/after, eps from config.json).</summary>
public class HuggingFaceLoadingTests
{
    /// <summary>Writes the timm fixture under ViTForImageClassification names, as transformers' converter does.</summary>
    static string WriteHuggingFaceCopy(string dir, bool withPooler)
    {
        var timm = SafeTensors.Load(TestFiles.VitCheckpoint);
        var hf = new Dictionary<string, Tensor>
        {
            ["vit.embeddings.cls_token"] = timm["cls_token"],
            ["vit.embeddings.position_embeddings"] = timm["pos_embed"],
            ["vit.embeddings.patch_embeddings.projection.weight"] = timm["patch_embed.proj.weight"],
            ["vit.embeddings.patch_embeddings.projection.bias"] = timm["patch_embed.proj.bias"],
            ["vit.layernorm.weight"] = timm["norm.weight"], ["vit.layernorm.bias"] = timm["norm.bias"],
            ["classifier.weight"] = timm["head.weight"], ["classifier.bias"] = timm["head.bias"],
        };
        for (int i = 0; i < 2; i++)
        {
            string l = $"vit.encoder.layer.{i}.", b = $"blocks.{i}.";
            foreach (var t in new[] { "weight", "bias" })
            {
                var qkv = timm[b + "attn.qkv." + t].chunk(3, 0);
                hf[l + "attention.attention.query." + t] = qkv[0].contiguous();
                hf[l + "attention.attention.key." + t] = qkv[1].contiguous();
                hf[l + "attention.attention.value." + t] = qkv[2].contiguous();
                hf[l + "attention.output.dense." + t] = timm[b + "attn.proj." + t];
                hf[l + "layernorm_before." + t] = timm[b + "norm1." + t];
                hf[l + "layernorm_after." + t] = timm[b + "norm2." + t];
                hf[l + "intermediate.dense." + t] = timm[b + "mlp.fc1." + t];
                hf[l + "output.dense." + t] = timm[b + "mlp.fc2." + t];
            }
        }
        if (withPooler)
        {
            hf["vit.pooler.dense.weight"] = zeros(64, 64);
            hf["vit.pooler.dense.bias"] = zeros(64);
        }
        string path = Path.Combine(dir, "model.safetensors");
        SafeTensors.Save(path, hf);
        return path;
    }

    [Fact]
    public void Hugging_face_checkpoint_with_config_json_matches_timm_outputs()
    {
        string dir = TestFiles.TempDir();
        string path = WriteHuggingFaceCopy(dir, withPooler: true);
        // eps 1e-6 here so outputs equal the timm fixture's; the config's value must be the one used.
        File.WriteAllText(Path.Combine(dir, "config.json"), """
            {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256,
             "image_size": 32, "patch_size": 8, "num_channels": 3, "layer_norm_eps": 1e-6, "qkv_bias": true,
             "hidden_act": "gelu", "id2label": {"0": "a"}}
            """);
        var loaded = ModelCheckpoints.LoadVit(path);
        Assert.Equal(KeyConvention.HuggingFace, loaded.Convention);
        Assert.Equal("config.json", loaded.ConfigSource);
        Assert.Equal(1e-6, loaded.Model.Config.NormEps);
        Assert.Contains(loaded.Report.Notes, n => n.Contains("pooler"));
        using var model = loaded.Model;
        model.eval();
        var io = SafeTensors.Load(TestFiles.VitIo);
        using var _ = no_grad();
        TensorAssert.Close(io["logits"], model.forward(io["input"]), what: "logits from HF names");
    }

    [Fact]
    public void Hugging_face_checkpoint_without_config_uses_their_default_eps()
    {
        string path = WriteHuggingFaceCopy(TestFiles.TempDir(), withPooler: false);
        var loaded = ModelCheckpoints.LoadVit(path, null);
        Assert.Equal(1e-12, loaded.Model.Config.NormEps);
        Assert.Equal(64, loaded.Model.Config.EmbedDim);
        Assert.Equal(10, loaded.Model.Config.NumClasses);
    }
}
