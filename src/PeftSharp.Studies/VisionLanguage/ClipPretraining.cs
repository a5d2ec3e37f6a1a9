using PeftSharp.Interop;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Suite;
using PeftSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.VisionLanguage;

/// <summary>The recipe of the shipped CLIP model (committed, so <c>peftsharp pretrain-clip</c> reruns it).</summary>
public sealed record ClipPretrainOptions
{
    /// <summary>Sized for 2 CPU cores and a ≤ 25 MB file: the default backbone's image tower (ViT-Tiny width, 6 blocks,
    /// 32 px, 8-px patches) and a 4-block, 128-wide text tower over CLIP's full BPE vocabulary with a 32-token context
    /// (the token embedding is most of the parameters, so the file is stored in float16).</summary>
    public ClipConfig Model { get; init; } = new()
    {
        EmbedDim = 128,
        Vision = ClipConfig.VisionTower(32, 8, 192, 6, 64, 4.0, 128, false),
        Text = new ClipTextConfig { ContextLength = 32, Width = 128, Heads = 4, Layers = 4 },
    };
    public int Steps { get; init; } = 1200;
    public int BatchSize { get; init; } = 128;
    public double Lr { get; init; } = 5e-4;
    public double WeightDecay { get; init; } = 0.1;
    public double WarmupFraction { get; init; } = 0.05;
    public int Seed { get; init; } = 2026;
    /// <summary>Shares of every batch: captioned scenes, glyphs captioned with their character, wallpaper crops
    /// captioned with their picture's name.</summary>
    public double SceneFraction { get; init; } = 0.6;
    public double GlyphFraction { get; init; } = 0.2;
    /// <summary>The image tower starts from this ViT's weights (the shipped default backbone: same shape); null
    /// trains it from scratch. The text tower always starts from scratch.</summary>
    public string? ImageTowerInit { get; init; }
    public string FontDir { get; init; } = GlyphSource.DefaultFontDir;
    public IReadOnlyList<string> PhotoDirs { get; init; } = PhotoSource.DefaultDirs;
    public Normalization Normalization { get; init; } = Normalization.Inception;
    public int HeldOut { get; init; } = 500;

    public ClipPretrainOptions Validate()
    {
        if (Steps < 1 || BatchSize < 8) throw new PeftSharpException(Steps < 1 ? "steps" : "batch_size", $"CLIP pretraining: steps must be >= 1 and batch size >= 8 (got {Steps} and {BatchSize})");
        if (SceneFraction < 0 || GlyphFraction < 0 || SceneFraction + GlyphFraction > 1)
            throw new PeftSharpException("pretrain-clip: the scene and glyph fractions must be >= 0 and sum to at most 1");
        if (!(Lr > 0)) throw new PeftSharpException("lr", $"CLIP pretraining: lr must be positive (got {Lr})");
        return this;
    }

    public (int Scenes, int Glyphs, int Photos) Split(int batch)
    {
        int scenes = (int)Math.Round(SceneFraction * batch), glyphs = (int)Math.Round(GlyphFraction * batch);
        return (scenes, glyphs, batch - scenes - glyphs);
    }
}

/// <summary>How well a CLIP model does on held-out data of its pretraining kind (all in %).</summary>
public sealed record ClipHeldOut(RetrievalScores SceneRetrieval, int RetrievalPairs, double SceneZeroShotTop1, int SceneClasses,
                                 double GlyphZeroShotTop1, int GlyphClasses, double PhotoZeroShotTop1, int PhotoClasses);

public sealed record ClipPretrainResult(ClipModel Model, int Steps, double Seconds, double PairsPerSecond, double FinalLoss,
                                        ClipHeldOut HeldOut, int GlyphClasses, int Faces, IReadOnlyList<string> Photos);

/// <summary>
/// Pretrains a small CLIP with the contrastive loss (symmetric InfoNCE, learnable temperature) on image–caption
/// pairs made here, fresh every step: CaptionScenes ("a small red circle left of a large blue square"), glyphs
/// captioned "the character ж" and wallpaper crops captioned "a photo of cold ripple". The shipped CLIP's recipe.
/// </summary>
public static class ClipPretraining
{
    const ulong TrainStream = 0x434C4950, HeldOutStream = 0x484F4C44; // "CLIP", "HOLD"

    /// <summary>"the character ж"; upper-case letters say so, because CLIP's tokenizer lower-cases ("A" and "a" would
    /// otherwise share one caption).</summary>
    public static string GlyphCaption(string character) =>
        char.IsUpper(character, 0) ? $"the capital character {character}" : $"the character {character}";

    /// <summary>"ColdRipple" → "a photo of cold ripple".</summary>
    public static string PhotoCaption(string name) => "a photo of " + Regex.Replace(name, "(?<=[a-z])(?=[A-Z])", " ").ToLowerInvariant();

    public static ClipPretrainResult Run(ClipPretrainOptions o, IProgress<string>? log = null, CancellationToken cancel = default)
    {
        o.Validate();
        var (sceneCount, glyphCount, photoCount) = o.Split(o.BatchSize);
        int size = o.Model.Vision.ImgSize;
        var glyphs = glyphCount > 0 ? GlyphSource.Open(size, o.Seed, o.FontDir) : null;
        var photos = photoCount > 0 ? PhotoSource.Open(size, o.PhotoDirs) : null;
        log?.Report($"each batch of {o.BatchSize}: {sceneCount} scenes, {glyphCount} glyphs ({glyphs?.NumClasses ?? 0} characters), {photoCount} photo crops ({photos?.NumClasses ?? 0} pictures)");
        manual_seed(o.Seed);
        var model = new ClipModel(o.Model);
        if (o.ImageTowerInit != null) log?.Report($"image tower from {o.ImageTowerInit}: {InitImageTower(model, o.ImageTowerInit)} tensors copied");
        var parameters = model.parameters().ToList();
        var steps = new OptimizerSteps(parameters, o.Lr, o.WeightDecay, new CosineSchedule(o.Lr, o.Steps, (int)(o.Steps * o.WarmupFraction), 0, 0),
                                       gradClip: 1.0, "CLIP pretraining");
        var rng = new Random(o.Seed);
        CaptionSet Batch(int step)
        {
            var sceneSeeds = Enumerable.Range(0, sceneCount).Select(i => SuiteRng.Mix(TrainStream, (ulong)step, (ulong)i)).ToArray();
            var photoSeeds = Enumerable.Range(0, photoCount).Select(_ => (ulong)rng.NextInt64()).ToArray();
            var glyphBatch = glyphs?.NextBatch(glyphCount, rng);
            return Mixed(size, CaptionScenes.Render(sceneSeeds), glyphs, glyphBatch, photos, photos?.Render(photoSeeds));
        }
        var watch = Stopwatch.StartNew();
        var next = Task.Run(() => Batch(0));
        double running = double.NaN;
        for (int step = 0; step < o.Steps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            var batch = next.GetAwaiter().GetResult();
            int following = step + 1;
            next = Task.Run(() => Batch(following)); // render the next batch while this one trains
            steps.Schedule(step);
            model.train();
            var indices = Enumerable.Range(0, batch.Count).ToArray();
            double value = steps.Step(() =>
            {
                var tokens = CaptionSet.Tokenize(batch.Captions, o.Model.Text.ContextLength, out _);
                return ClipLosses.Contrastive(model.EncodeImage(batch.Images(indices, o.Normalization)), model.EncodeText(tokens), model.logit_scale, batch.Groups);
            }, $"step {step + 1}");
            // open_clip clamps the learnable temperature at 100.
            using (no_grad()) KeptScalar.Clamp_(model.logit_scale, 0, Math.Log(100));   // beside the batch renderer
            running = double.IsNaN(running) ? value : 0.98 * running + 0.02 * value;
            if ((step + 1) % 100 == 0 || step + 1 == o.Steps)
                log?.Report(string.Create(CultureInfo.InvariantCulture,
                    $"step {step + 1}/{o.Steps} loss {running:F3} scale {model.logit_scale.exp().item<float>():F1} {(step + 1) * o.BatchSize / watch.Elapsed.TotalSeconds:F0} pairs/s elapsed {watch.Elapsed:hh\\:mm\\:ss}"));
        }
        double seconds = watch.Elapsed.TotalSeconds;
        steps.Dispose();
        var heldOut = Evaluate(model, o, glyphs, photos);
        log?.Report($"held-out scene retrieval ({heldOut.RetrievalPairs} pairs): {heldOut.SceneRetrieval}");
        log?.Report(string.Create(CultureInfo.InvariantCulture, $"zero-shot top-1: scenes {heldOut.SceneZeroShotTop1:F1}% of {heldOut.SceneClasses} classes, glyphs {heldOut.GlyphZeroShotTop1:F1}% of {heldOut.GlyphClasses}, photos {heldOut.PhotoZeroShotTop1:F1}% of {heldOut.PhotoClasses}"));
        return new ClipPretrainResult(model, o.Steps, seconds, o.Steps * (double)o.BatchSize / seconds, running, heldOut,
                                      glyphs?.NumClasses ?? 0, glyphs?.NumFaces ?? 0, photos?.Names ?? []);
    }

    /// <summary>Copies every tensor of a timm ViT checkpoint whose name and shape match the image tower (all but the
    /// classification head, which CLIP replaces by its projection); returns how many.</summary>
    public static int InitImageTower(ClipModel model, string vitCheckpoint)
    {
        using var loaded = ModelCheckpoints.LoadVit(vitCheckpoint).Model;
        var source = loaded.state_dict();
        int copied = 0;
        using var _ = no_grad();
        foreach (var (name, target) in model.visual.state_dict())
            if (!name.StartsWith("head.", StringComparison.Ordinal) && source.TryGetValue(name, out var value) && value.shape.SequenceEqual(target.shape))
            {
                target.copy_(value);
                copied++;
            }
        return copied;
    }

    /// <summary>One caption set from the three sources' samples, in that order.</summary>
    static CaptionSet Mixed(int size, IReadOnlyList<CaptionedImage> scenes, GlyphSource? glyphs, (byte[] Pixels, long[] Labels)? glyphBatch,
                            PhotoSource? photos, (byte[] Pixels, long[] Labels)? photoBatch)
    {
        var pixels = scenes.Select(s => s.Pixels).ToList();
        var captions = scenes.Select(s => s.Caption).ToList();
        void Add((byte[] Pixels, long[] Labels)? batch, Func<long, string> caption)
        {
            if (batch is not { } b) return;
            pixels.AddRange(CaptionSet.SplitImages(b.Pixels, size));
            captions.AddRange(b.Labels.Select(caption));
        }
        Add(glyphBatch, l => GlyphCaption(glyphs!.Classes[(int)l]));
        Add(photoBatch, l => PhotoCaption(photos!.Names[(int)l]));
        return new CaptionSet("pretraining batch", size, pixels, captions);
    }

    /// <summary>Held-out scene pairs with unique scenes (drawn from a stream training never uses).</summary>
    public static CaptionSet HeldOutScenes(int count) => VlTasks.Scenes("held-out scenes", count, HeldOutStream, unique: true);

    /// <summary>Held-out retrieval and zero-shot classification: single-object scenes among the 64 "a {size} {colour}
    /// {shape}" prompts, glyphs among their characters, photo crops among their pictures.</summary>
    public static ClipHeldOut Evaluate(ClipModel model, ClipPretrainOptions o, GlyphSource? glyphs, PhotoSource? photos)
    {
        var retrieval = ClipEvaluation.Retrieval(model, HeldOutScenes(o.HeldOut), o.Normalization);
        var objects = SingleObjectScenes(o.HeldOut);
        double sceneTop1 = ClipEvaluation.Classify(model, objects, o.Normalization).Top1;
        double glyphTop1 = double.NaN, photoTop1 = double.NaN;
        int size = o.Model.Vision.ImgSize;
        if (glyphs != null)
        {
            var (pixels, labels) = glyphs.HeldOut(o.HeldOut, o.Seed + 1);
            glyphTop1 = ClipEvaluation.Classify(model, Classification("held-out glyphs", size, pixels, labels, glyphs.Classes.Select(GlyphCaption).ToArray()), o.Normalization).Top1;
        }
        if (photos != null)
        {
            var seeds = Enumerable.Range(0, o.HeldOut).Select(i => SuiteRng.Mix(HeldOutStream, 7, (ulong)i)).ToArray();
            var (pixels, labels) = photos.Render(seeds);
            photoTop1 = ClipEvaluation.Classify(model, Classification("held-out photos", size, pixels, labels, photos.Names.Select(PhotoCaption).ToArray()), o.Normalization).Top1;
        }
        return new ClipHeldOut(retrieval, o.HeldOut, sceneTop1, objects.ClassPrompts!.Count, glyphTop1, glyphs?.NumClasses ?? 0, photoTop1, photos?.NumClasses ?? 0);
    }

    /// <summary>Held-out scenes of one object, labelled by their caption among all 64 single-object captions.</summary>
    public static CaptionSet SingleObjectScenes(int count)
    {
        var prompts = (from s in CaptionScenes.SizeWords from c in CaptionScenes.Colours from h in CaptionScenes.Shapes select $"a {s} {c} {h}").ToList();
        var items = new List<CaptionedImage>();
        for (ulong i = 0; items.Count < count; i++)
        {
            var item = CaptionScenes.Render(SuiteRng.Mix(HeldOutStream, 1, i));
            if (prompts.Contains(item.Caption)) items.Add(item);
        }
        return new CaptionSet("held-out single objects", CaptionScenes.Size, items.Select(s => s.Pixels).ToArray(), items.Select(s => s.Caption).ToArray(),
                              labels: items.Select(s => prompts.IndexOf(s.Caption)).ToArray(), classPrompts: prompts);
    }

    static CaptionSet Classification(string name, int size, byte[] pixels, long[] labels, IReadOnlyList<string> prompts)
    {
        var images = CaptionSet.SplitImages(pixels, size);
        var ints = labels.Select(l => (int)l).ToArray();
        return new CaptionSet(name, size, images, ints.Select(l => prompts[l]).ToArray(), labels: ints, classPrompts: prompts);
    }

    /// <summary>Writes the model (open_clip keys, float16, config and normalisation metadata) and its card beside it.</summary>
    public static void Save(ClipPretrainResult r, ClipPretrainOptions o, string path, string command)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        ModelCheckpoints.SaveClip(path, r.Model, o.Model.ToJson(), new Dictionary<string, string>
        {
            [ModelCheckpoints.NormalizationKey] = o.Normalization.Name, ["pretraining"] = "contrastive (CLIP loss) on rendered image-caption pairs",
        }, half: true);
        var h = r.HeldOut;
        var card = new JsonObject
        {
            ["architecture"] = JsonNode.Parse(o.Model.ToJson()),
            ["storage"] = "safetensors, open_clip key names, float16 (loads into float32)",
            ["data"] = $"per batch of {o.BatchSize}: {o.SceneFraction:P0} CaptionScenes (1-2 shapes, 8 colours x 4 shapes x 2 sizes, relations left of/right of/above/below), " +
                       $"{o.GlyphFraction:P0} glyphs ({r.GlyphClasses} characters from {r.Faces} font faces) captioned 'the character X', the rest wallpaper crops ({r.Photos.Count} pictures) captioned 'a photo of NAME'; all rendered fresh every step",
            ["recipe"] = new JsonObject
            {
                ["steps"] = o.Steps, ["batch_size"] = o.BatchSize, ["optimizer"] = "AdamW", ["lr"] = o.Lr, ["weight_decay"] = o.WeightDecay,
                ["schedule"] = $"linear warm-up {o.WarmupFraction:P0} of steps, cosine per step to 0", ["loss"] = "symmetric InfoNCE, learnable temperature (clamped at 100), identical captions in a batch count as positives",
                ["grad_clip"] = 1.0, ["seed"] = o.Seed, ["image_tower_init"] = o.ImageTowerInit == null ? "scratch" : Path.GetFileName(o.ImageTowerInit),
                ["text_tower_init"] = "scratch", ["normalization"] = o.Normalization.Name,
            },
            ["held_out"] = new JsonObject
            {
                ["scene_retrieval_pairs"] = h.RetrievalPairs,
                ["scene_retrieval"] = new JsonObject(h.SceneRetrieval.ToDictionary().Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 2)))),
                ["scene_retrieval_chance_r1"] = Math.Round(100.0 / h.RetrievalPairs, 2),
                ["scene_zero_shot_top1"] = Math.Round(h.SceneZeroShotTop1, 2), ["scene_classes"] = h.SceneClasses,
                ["glyph_zero_shot_top1"] = double.IsNaN(h.GlyphZeroShotTop1) ? null : Math.Round(h.GlyphZeroShotTop1, 2), ["glyph_classes"] = h.GlyphClasses,
                ["photo_zero_shot_top1"] = double.IsNaN(h.PhotoZeroShotTop1) ? null : Math.Round(h.PhotoZeroShotTop1, 2), ["photo_classes"] = h.PhotoClasses,
            },
            ["training_seconds"] = Math.Round(r.Seconds, 1), ["pairs_per_second"] = Math.Round(r.PairsPerSecond, 1),
            ["final_train_loss"] = Math.Round(r.FinalLoss, 4), ["logit_scale"] = Math.Round(r.Model.logit_scale.exp().item<float>(), 2),
            ["machine"] = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
            ["command"] = command,
        };
        File.WriteAllText(Path.ChangeExtension(path, null) + ".card.json", card.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
