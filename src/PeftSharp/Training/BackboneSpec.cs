using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Models;

namespace PeftSharp.Training;

/// <summary>
/// The backbone of a run as the user named it: a preset, timm kwargs (JSON), a checkpoint, or a combination
/// (kwargs override the preset; without either, the checkpoint's metadata or shapes give the architecture).
/// </summary>
public sealed record BackboneSpec(string? Preset, string? ConfigJson, string? Checkpoint)
{
    /// <summary>The backbone a user named, or the shipped pretrained one when they named none (a preset or config
    /// alone builds a randomly initialised model: see <see cref="IsRandomInit"/>).</summary>
    public static BackboneSpec OrShipped(string? preset, string? configJson, string? checkpoint) =>
        preset == null && configJson == null && checkpoint == null
            ? new BackboneSpec(null, null, ShippedModels.RequireDefaultVit())
            : new BackboneSpec(preset, configJson, checkpoint);

    /// <summary>No pretrained weights: every weight starts from random initialisation.</summary>
    public bool IsRandomInit => Checkpoint == null;

    /// <summary>The normalisation preset the checkpoint records (what its weights were trained with), if any.</summary>
    public string? RecordedNormalization() => Checkpoint is string path ? ModelCheckpoints.ReadNormalization(path) : null;

    /// <summary>The ViT for a task: its head sized for <paramref name="numClasses"/> (a fresh head when the checkpoint's
    /// differs) and the given stochastic depth.</summary>
    public VisionTransformer Load(int numClasses, double dropPath, out LoadReport? report)
    {
        VitConfig Adjust(VitConfig c) => c with { NumClasses = numClasses, DropPathRate = dropPath };
        var config = VitConfig.Resolve(Preset, ConfigJson);
        if (Checkpoint != null)
        {
            var loaded = ModelCheckpoints.LoadVit(Checkpoint, config, adjust: Adjust);
            report = loaded.Report;
            return loaded.Model;
        }
        if (config == null)
            throw new PeftSharpException("checkpoint", "no backbone: give a model preset, a config and/or a checkpoint");
        report = null;
        return new VisionTransformer(Adjust(config));
    }

    /// <summary>The architecture as JSON for run records (the preset name and the kwargs given).</summary>
    public string ModelJson => new JsonObject
    {
        ["preset"] = Preset,
        ["config"] = ConfigJson == null ? null : VitConfig.Resolve(null, ConfigJson)!.ToJson(),
    }.ToJsonString();

    /// <summary>"file sha256:…" of the checkpoint, or "random-init".</summary>
    public string CheckpointIdentity() => Checkpoints.CheckpointIdentity.Of(Checkpoint);

    /// <summary>The architecture (read from the checkpoint's config when nothing else is given), without weights.</summary>
    public VitConfig Config() =>
        VitConfig.Resolve(Preset, ConfigJson)
        ?? (Checkpoint != null ? ModelCheckpoints.ReadVitConfig(Checkpoint)
                               : throw new PeftSharpException("checkpoint", "no backbone: give a model preset, a config and/or a checkpoint"));

    /// <summary>The input size the backbone expects.</summary>
    public int ImageSize() => Config().ImgSize;
}
