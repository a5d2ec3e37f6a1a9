using PeftSharp.Interop;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Suite;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Training;

/// <summary>The recipe of the shipped default backbone (committed, so it can be rerun).</summary>
public sealed record PretrainOptions
{
    /// <summary>Sized for 2 CPU cores: ViT-Tiny width, 6 blocks, 32-px input with 8-px patches.</summary>
    public VitConfig Model { get; init; } = new()
    {
        ImgSize = 32, PatchSize = 8, EmbedDim = 192, Depth = 6, NumHeads = 3, NumClasses = 0, DropPathRate = 0.05,
    };
    public int Steps { get; init; } = 4000;
    public int BatchSize { get; init; } = 128;
    public double Lr { get; init; } = 5e-4;
    public double WeightDecay { get; init; } = 0.05;
    public double WarmupFraction { get; init; } = 0.05;
    public double MinLr { get; init; } = 1e-5;
    public double LabelSmoothing { get; init; } = 0.1;
    public int Seed { get; init; } = 2026;
    public string FontDir { get; init; } = GlyphSource.DefaultFontDir;
    public int HeldOut { get; init; } = 4000;
    /// <summary>Curriculum: over this fraction of the steps the active classes grow geometrically from
    /// <see cref="StartClasses"/> to all, and the augmentation strength linearly from 0 to 1. Without it the model
    /// sits at chance on the full task (636 classes, full augmentation) for thousands of steps (measured here).</summary>
    public double CurriculumFraction { get; init; } = 0.6;
    public int StartClasses { get; init; } = 32;
    /// <summary>Input normalisation, stored in the checkpoint's metadata for downstream use. Inception (mean 0.5,
    /// std 0.5) rather than raw [0, 1]: without centring, the same 6-block ViT stays at chance even on 64 plain
    /// classes for 100 steps; with it, it reaches 72 % batch accuracy there (measured here).</summary>
    public Normalization Normalization { get; init; } = Normalization.Inception;
    /// <summary>The share of every batch drawn from <see cref="PhotoSource"/> (wallpaper crops, one class per picture)
    /// instead of glyphs; 0 for glyphs alone. Glyphs in random colours teach the model to discard colour and texture;
    /// without this half, a linear probe on the pretrained model lost to one on random init on photo-patches
    /// (26.7 vs 51.6 %, measured here).</summary>
    public double PhotoFraction { get; init; } = 0.25;
    public IReadOnlyList<string> PhotoDirs { get; init; } = PhotoSource.DefaultDirs;

    /// <summary>How many of a batch's samples are photo crops.</summary>
    public int PhotosPerBatch(int batchSize) => PhotoFraction <= 0 ? 0 : Math.Clamp((int)Math.Round(PhotoFraction * batchSize), 1, batchSize - 1);

    /// <summary>The curriculum's (active classes, augmentation strength) at <paramref name="step"/>.</summary>
    public (int Classes, double Difficulty) Curriculum(int step, int numClasses)
    {
        double ramp = CurriculumFraction <= 0 ? 1 : Math.Min(1, step / (CurriculumFraction * Steps));
        int start = Math.Clamp(StartClasses, 1, numClasses);
        int classes = (int)Math.Round(start * Math.Pow((double)numClasses / start, ramp));
        return (Math.Clamp(classes, start, numClasses), ramp);
    }
}

public sealed record PretrainResult(VisionTransformer Model, int Classes, int Faces, int Steps, double Seconds,
                                    double HeldOutTop1, double FinalLoss, double ImagesPerSecond)
{
    public int GlyphClasses { get; init; } = Classes;
    /// <summary>The photo source's pictures (classes after the glyphs'), empty without it.</summary>
    public IReadOnlyList<string> Photos { get; init; } = [];
    /// <summary>Held-out top-1 over fresh photo crops, NaN without the photo source.</summary>
    public double PhotoHeldOutTop1 { get; init; } = double.NaN;
}

/// <summary>
/// Pretrains the default backbone by supervised classification over two sources mixed in every batch: rendered
/// glyphs (GlyphSource: hundreds of characters from every installed font face, random affine, colours and noise;
/// digits excluded so the source is disjoint from the digit tasks) and crops of wallpaper pictures (PhotoSource: one
/// class per picture, colours kept). Supervised pretraining as for the study's ImageNet-21k backbone, at a size a
/// 2-core CPU can afford, with centred inputs and a curriculum (<see cref="PretrainOptions.Curriculum"/>): the
/// shipped weights' recipe.
/// </summary>
public static class Pretraining
{
    public static PretrainResult Run(PretrainOptions o, IProgress<string>? log = null, CancellationToken cancel = default)
    {
        if (!(o.PhotoFraction >= 0 && o.PhotoFraction < 1)) throw new PeftSharpException($"pretrain: the photo fraction must be in [0, 1), got {o.PhotoFraction}");
        if (o.PhotoFraction > 0 && o.BatchSize < 2) throw new PeftSharpException("pretrain: mixing photos and glyphs needs a batch of at least 2");
        var source = GlyphSource.Open(o.Model.ImgSize, o.Seed, o.FontDir);
        log?.Report($"glyph source: {source.NumClasses} classes from {source.NumFaces} font faces");
        var photos = o.PhotoFraction > 0 ? PhotoSource.Open(o.Model.ImgSize, o.PhotoDirs) : null;
        int photoCount = o.PhotosPerBatch(o.BatchSize);
        if (photos != null) log?.Report($"photo source: {photos.NumClasses} pictures, {photoCount} crops per batch of {o.BatchSize}");
        manual_seed(o.Seed);
        var model = new VisionTransformer(o.Model with { NumClasses = source.NumClasses + (photos?.NumClasses ?? 0) });
        using (no_grad())
            model.pos_embed.copy_(InitWeights.SinCosPositionEmbedding(model.EmbedDim, model.Config.GridSize,
                                                                     model.Config.NoEmbedClass ? 0 : model.Config.NumPrefixTokens));
        using var steps = new OptimizerSteps(model.parameters().ToList(), o.Lr, o.WeightDecay,
                                             new WarmupThenCosine(o.Lr, o.Steps, (int)(o.Steps * o.WarmupFraction), o.MinLr), gradClip: 1.0, "pretraining");
        var rng = new Random(o.Seed);
        var watch = Stopwatch.StartNew();
        Task<(byte[], long[])> Render(int step)
        {
            var (classes, difficulty) = o.Curriculum(step, source.NumClasses);
            var photoSeeds = Enumerable.Range(0, photoCount).Select(_ => (ulong)rng.NextInt64()).ToArray();
            return Task.Run(() =>
            {
                var glyphs = source.NextBatch(o.BatchSize - photoCount, rng, difficulty, classes);
                return photos == null ? glyphs : Concat(glyphs, photos.Render(photoSeeds, firstLabel: source.NumClasses));
            });
        }
        var next = Render(0);
        double running = double.NaN;
        for (int step = 0; step < o.Steps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            var (pixels, labels) = next.GetAwaiter().GetResult();
            next = Render(step + 1);   // render the next batch while this one trains
            double lr = steps.Schedule(step);
            model.train();
            double value = steps.Step(() =>
            {
                var x = Transforms.NormalizeInPlace(KeptScalar.Div_(source.ToTensor(pixels).to(float32), 255f), o.Normalization);
                return F.cross_entropy(model.forward(x), tensor(labels), label_smoothing: o.LabelSmoothing);
            }, $"step {step + 1}");
            running = double.IsNaN(running) ? value : 0.98 * running + 0.02 * value;
            if ((step + 1) % 100 == 0 || step + 1 == o.Steps)
                log?.Report(string.Create(CultureInfo.InvariantCulture,
                    $"step {step + 1}/{o.Steps} loss {running:F3} lr {lr:G3} classes {o.Curriculum(step, source.NumClasses).Classes} {(step + 1) * o.BatchSize / watch.Elapsed.TotalSeconds:F0} img/s elapsed {watch.Elapsed:hh\\:mm\\:ss}"));
        }
        double seconds = watch.Elapsed.TotalSeconds;
        double accuracy = HeldOutAccuracy(model, source, source.HeldOut(o.HeldOut, o.Seed + 1), o);
        log?.Report($"held-out glyph top-1 {accuracy:F2}% over {o.HeldOut} images");
        double photoAccuracy = double.NaN;
        if (photos != null)
        {
            var seeds = Enumerable.Range(0, o.HeldOut).Select(i => SuiteRng.Mix(PhotoHeldOutStream, (ulong)(uint)o.Seed, (ulong)i)).ToArray();
            photoAccuracy = HeldOutAccuracy(model, source, photos.Render(seeds, firstLabel: source.NumClasses), o);
            log?.Report($"held-out photo top-1 {photoAccuracy:F2}% over {o.HeldOut} fresh crops of {photos.NumClasses} pictures");
        }
        return new PretrainResult(model, model.Config.NumClasses, source.NumFaces, o.Steps, seconds, accuracy, running,
                                  o.Steps * (double)o.BatchSize / seconds)
        {
            GlyphClasses = source.NumClasses, Photos = photos?.Names ?? [], PhotoHeldOutTop1 = photoAccuracy,
        };
    }

    const ulong PhotoHeldOutStream = 0x50484F54; // "PHOT": crops that training batches never draw

    /// <summary>One batch of glyphs then photo crops.</summary>
    static (byte[], long[]) Concat((byte[] Pixels, long[] Labels) glyphs, (byte[] Pixels, long[] Labels) photos) =>
        ([.. glyphs.Pixels, .. photos.Pixels], [.. glyphs.Labels, .. photos.Labels]);

    static double HeldOutAccuracy(VisionTransformer model, GlyphSource source, (byte[] Pixels, long[] Labels) heldOut, PretrainOptions o)
    {
        model.eval();
        var (pixels, labels) = heldOut;
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        var x = Transforms.NormalizeInPlace(KeptScalar.Div_(source.ToTensor(pixels).to(float32), 255f), o.Normalization);
        long correct = 0;
        for (int start = 0; start < labels.Length; start += 256)
        {
            int end = Math.Min(labels.Length, start + 256);
            var predicted = model.forward(x[start..end]).argmax(1).data<long>().ToArray();
            for (int i = 0; i < predicted.Length; i++) correct += predicted[i] == labels[start + i] ? 1 : 0;
        }
        return 100.0 * correct / labels.Length;
    }

    /// <summary>Writes the weights (timm keys, config metadata) and a model card beside them.</summary>
    public static void Save(PretrainResult r, PretrainOptions o, string path, string? command = null)
    {
        var meta = new Dictionary<string, string>
        {
            ["pretraining"] = r.Photos.Count > 0 ? "glyph and photograph classification" : "glyph classification",
            ["classes"] = r.Classes.ToString(CultureInfo.InvariantCulture),
            ["held_out_top1"] = r.HeldOutTop1.ToString("F2", CultureInfo.InvariantCulture),
            [ModelCheckpoints.NormalizationKey] = o.Normalization.Name,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        ModelCheckpoints.SaveVit(path, r.Model, meta);
        var card = new JsonObject
        {
            ["architecture"] = JsonNode.Parse(r.Model.Config.ToJson()),
            ["data"] = $"GlyphSource: {r.GlyphClasses} character classes rendered from {r.Faces} installed font faces (digits excluded), random affine, colours, noise, 32x32" +
                       (r.Photos.Count > 0 ? $"; PhotoSource: {r.Photos.Count} wallpaper pictures (one class each, classes {r.GlyphClasses}-{r.Classes - 1}), random crops of 10-50 % of the short side, flips, colours kept; {o.PhotoFraction:P0} of every batch" : ""),
            ["photos"] = new JsonArray(r.Photos.Select(p => (JsonNode?)JsonValue.Create(p)).ToArray()),
            ["recipe"] = new JsonObject
            {
                ["steps"] = o.Steps, ["batch_size"] = o.BatchSize, ["optimizer"] = "AdamW", ["lr"] = o.Lr, ["weight_decay"] = o.WeightDecay,
                ["schedule"] = $"linear warm-up {o.WarmupFraction:P0} of steps, cosine per step to {o.MinLr}", ["label_smoothing"] = o.LabelSmoothing,
                ["drop_path"] = o.Model.DropPathRate,
                ["curriculum"] = $"over the first {o.CurriculumFraction:P0} of steps: classes {o.StartClasses} to all (geometric, code-point order), augmentation 0 to full (linear)", ["pos_embed_init"] = "2-D sine-cosine (learnable)", ["grad_clip"] = 1.0, ["seed"] = o.Seed, ["normalization"] = $"{o.Normalization.Name} (mean {string.Join("/", o.Normalization.Mean)}, std {string.Join("/", o.Normalization.Std)})",
            },
            ["training_seconds"] = Math.Round(r.Seconds, 1), ["images_per_second"] = Math.Round(r.ImagesPerSecond, 1),
            ["held_out_top1_percent"] = Math.Round(r.HeldOutTop1, 2),
            ["held_out_photo_top1_percent"] = double.IsNaN(r.PhotoHeldOutTop1) ? null : Math.Round(r.PhotoHeldOutTop1, 2),
            ["final_train_loss"] = Math.Round(r.FinalLoss, 4),
            ["machine"] = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
            ["command"] = command,   // how the caller ran it (the CLI passes its command line); the settings above are the record
        };
        File.WriteAllText(Path.ChangeExtension(path, ".card.json"), card.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
