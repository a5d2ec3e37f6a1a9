using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using PeftSharp.VisionLanguage;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Inference;

/// <summary>What prediction needs of a classifier: its preprocessing, its classes and its logits.</summary>
public interface IImageClassifier : IDisposable
{
    Preprocessing Preprocessing { get; }
    int NumClasses { get; }
    string ClassName(int label);
    /// <summary>Class logits [B, classes] of preprocessed images [B, 3, S, S], in inference mode.</summary>
    Tensor Logits(Tensor images);
}

/// <summary>
/// CLIP zero-shot classification: each class is the mean of its prompts' normalised text features (CLIP's prompt
/// ensembling: one prompt per template, e.g. "a photo of a {}."), and an image's logits are the scaled cosine
/// similarities to those class features. The CLIP model may carry an adapter on either tower.
/// </summary>
public sealed class ZeroShotClassifier : IImageClassifier, IDisposable
{
    public const string DefaultTemplate = "a photo of a {}.";

    readonly ClipModel model;
    readonly Tensor classFeatures;   // [classes, embed], normalised

    ZeroShotClassifier(ClipModel model, Tensor classFeatures, IReadOnlyList<string> classNames, Preprocessing preprocessing)
    {
        this.model = model;
        this.classFeatures = classFeatures;
        ClassNames = classNames;
        Preprocessing = preprocessing;
    }

    public IReadOnlyList<string> ClassNames { get; }
    /// <summary>The CLIP model's architecture (its image tower is what a precision probe times).</summary>
    public ClipConfig Config => model.Config;
    public Preprocessing Preprocessing { get; }
    public int NumClasses => ClassNames.Count;
    public string ClassName(int label) => ClassNames[label];

    /// <param name="checkpoint">An open_clip-keyed CLIP checkpoint (null: the shipped CLIP model).</param>
    /// <param name="templates">Prompt templates with "{}" where the class name goes (none: <see cref="DefaultTemplate"/>).</param>
    public static ZeroShotClassifier Load(string? checkpoint, string? adapter, IReadOnlyList<string> classNames, IReadOnlyList<string>? templates = null)
    {
        if (classNames.Count < 2) throw new PeftSharpException($"zero-shot classes: expected at least two class names, got {classNames.Count}");
        var duplicate = classNames.GroupBy(c => c).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null) throw new PeftSharpException($"zero-shot classes: '{duplicate.Key}' is named twice");
        templates = templates is { Count: > 0 } ? templates : [DefaultTemplate];
        var bad = templates.FirstOrDefault(t => !t.Contains("{}", StringComparison.Ordinal));
        if (bad != null) throw new PeftSharpException($"prompt template '{bad}': expected '{{}}' where the class name goes");

        string path = checkpoint ?? ShippedModels.RequireDefaultClip();
        var model = ModelCheckpoints.LoadClip(path).Model;
        try
        {
            if (adapter != null) AdapterFiles.Load(model, adapter);
            model.eval();
            var normalization = Normalization.FromName(ModelCheckpoints.ReadNormalization(path) ?? "inception");
            var features = ClassFeatures(model, classNames, templates);
            return new ZeroShotClassifier(model, features, classNames, new Preprocessing(model.Config.Vision.ImgSize, normalization));
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    static Tensor ClassFeatures(ClipModel model, IReadOnlyList<string> classNames, IReadOnlyList<string> templates)
    {
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        var perClass = classNames.Select(name =>
        {
            var prompts = templates.Select(t => t.Replace("{}", name, StringComparison.Ordinal)).ToList();
            return ClipEvaluation.ClassEmbeddings(model, prompts).mean([0]);
        }).ToArray();
        return nn.functional.normalize(stack(perClass), dim: -1).MoveToOuterDisposeScope();
    }

    public Tensor Logits(Tensor images) => ClipLosses.ClassLogits(model.EncodeImage(images.to(model.logit_scale.device)), classFeatures, model.logit_scale);

    public void Dispose()
    {
        classFeatures.Dispose();
        model.Dispose();
    }
}
