using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Inference;
using PeftSharp.Models;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.MultiAdapter;

/// <summary>One adapter of a <see cref="MultiAdapterClassifier"/>: its name (the folder's), folder and class names.</summary>
public sealed record LoadedAdapter(string Name, string Directory, IReadOnlyList<string>? ClassNames)
{
    public string ClassName(int label) =>
        ClassNames is { } names && label >= 0 && label < names.Count ? names[label] : label.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>One image's top classes under one adapter.</summary>
public sealed record AdapterPrediction(string Adapter, ImagePrediction Prediction);

/// <summary>
/// Adapter folders trained for different tasks on one base checkpoint, loaded onto one backbone
/// (<see cref="MultiAdapterModel"/>) with the preprocessing they share: each image of a batch can go to any adapter.
/// Adapters recorded on another base (SHA-256), with another preprocessing, or of a method that cannot share a
/// backbone are refused in one line naming the adapter.
/// </summary>
public sealed class MultiAdapterClassifier : IDisposable
{
    MultiAdapterClassifier(MultiAdapterModel model, IReadOnlyList<LoadedAdapter> adapters, Preprocessing preprocessing, string checkpoint)
    {
        Model = model;
        Adapters = adapters;
        Preprocessing = preprocessing;
        Checkpoint = checkpoint;
    }

    public MultiAdapterModel Model { get; }
    public IReadOnlyList<LoadedAdapter> Adapters { get; }
    public Preprocessing Preprocessing { get; }
    public string Checkpoint { get; }

    /// <param name="checkpoint">The base checkpoint; null: the first adapter's recorded base if that file is there, else the shipped backbone.</param>
    /// <param name="forceBase">Apply adapters even to a base whose SHA-256 differs from the one they record (their frozen
    /// weights must still be this base's, which loading them onto it makes true).</param>
    public static MultiAdapterClassifier Load(string? checkpoint, IReadOnlyList<string> adapterDirectories, VitConfig? config = null, bool forceBase = false)
    {
        if (adapterDirectories.Count == 0) throw new PeftSharpException("adapters: name at least one adapter folder");
        var infos = adapterDirectories.Select(AdapterFiles.ReadInfo).ToList();
        var names = adapterDirectories.Select(d => Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)))).ToList();
        var twice = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (twice != null) throw new PeftSharpException($"adapters: two adapter folders are named '{twice.Key}'; an adapter is known by its folder's name");

        string path = checkpoint
            ?? (infos[0].BaseCheckpoint is string recorded && File.Exists(recorded) ? recorded : ShippedModels.RequireDefaultVit());
        string sha = FileHashes.Sha256(path);
        for (int i = 0; i < infos.Count && !forceBase; i++)
            if (infos[i].BaseSha256 is string expected && expected != sha)
                throw new PeftSharpException($"adapter '{names[i]}' ({Path.Combine(infos[i].Directory, AdapterFiles.ConfigFile)}): trained on {Path.GetFileName(infos[i].BaseCheckpoint)} (sha256 {expected[..12]}…), not on {path} (sha256 {sha[..12]}…); all adapters of one backbone need its base");

        var model = new MultiAdapterModel(ModelCheckpoints.LoadVit(path, config).Model);
        try
        {
            int size = model.backbone.Config.ImgSize;
            var fromCheckpoint = Classifier.ReadPreprocessing(path, size);
            Preprocessing? shared = null;
            string? sharedBy = null;
            for (int i = 0; i < infos.Count; i++)
            {
                var preprocessing = infos[i].Preprocessing ?? fromCheckpoint ?? new Preprocessing(size, Normalization.None);
                if (shared != null && preprocessing != shared)
                    throw new PeftSharpException($"adapter '{names[i]}' ({Path.Combine(infos[i].Directory, AdapterFiles.ConfigFile)}): preprocessing {preprocessing} differs from adapter '{sharedBy}''s {shared}; one batch has one preprocessing");
                (shared, sharedBy) = (preprocessing, names[i]);
                if (preprocessing.ImageSize != size)
                    throw new PeftSharpException($"adapter '{names[i]}': preprocessing.image_size {preprocessing.ImageSize} differs from the model's img_size {size}");
            }
            var loaded = new List<LoadedAdapter>();
            for (int i = 0; i < infos.Count; i++)
            {
                // Each adapter is applied to its own fresh copy of the base, as when it was saved; its branches and
                // head are then copied onto the shared backbone and the copy is freed.
                using var copy = ModelCheckpoints.LoadVit(path, config).Model;
                var peft = WithAdapterName(names[i], () => AdapterFiles.Load(copy, adapterDirectories[i]));
                model.AddAdapter(names[i], peft);
                if (infos[i].ClassNames is { } classes && classes.Count != model.NumClasses(names[i]))
                    throw new PeftSharpException($"adapter '{names[i]}': {classes.Count} class names for a head of {model.NumClasses(names[i])} classes");
                loaded.Add(new LoadedAdapter(names[i], adapterDirectories[i], infos[i].ClassNames));
            }
            model.eval();
            return new MultiAdapterClassifier(model, loaded, shared!, path);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    static T WithAdapterName<T>(string name, Func<T> load)
    {
        try { return load(); }
        catch (PeftSharpException e) { throw new PeftSharpException($"adapter '{name}': {e.Message}", e); }
    }

    /// <summary>Every image through every adapter, in mixed batches of <paramref name="batchSize"/> images × the adapters:
    /// for each image, one prediction per adapter, in the adapters' order.</summary>
    public IReadOnlyList<IReadOnlyList<AdapterPrediction>> Predict(ImageFiles files, int topK = 5, int batchSize = 64)
    {
        if (topK < 1) throw new PeftSharpException($"top-k: expected at least 1, got {topK}");
        var results = new IReadOnlyList<AdapterPrediction>[files.Count];
        using var loader = Preprocessing.Loader(files, batchSize);
        using var _ = inference_mode();
        foreach (var batch in loader.Epoch(0))
        {
            using (batch)
            using (var scope = NewDisposeScope())
            {
                int b = batch.Size;
                // Image-major: copy a of image i is example a·b + i.
                var images = batch.Images.repeat(Adapters.Count, 1, 1, 1);
                var names = Adapters.SelectMany(a => Enumerable.Repeat(a.Name, b)).ToList();
                var perImage = Enumerable.Range(0, b).Select(_ => new List<AdapterPrediction>()).ToArray();
                foreach (var group in Model.Forward(images, names))
                {
                    var adapter = Adapters.Single(a => a.Name == group.Adapter);
                    int k = Math.Min(topK, (int)group.Logits.shape[1]);
                    var top = nn.functional.softmax(group.Logits, 1).topk(k, 1);
                    float[] values = top.values.data<float>().ToArray();
                    long[] labels = top.indexes.data<long>().ToArray();
                    for (int row = 0; row < group.Examples.Length; row++)
                    {
                        int i = (int)(group.Examples[row] % b), index = batch.Indices[i];
                        var scores = Enumerable.Range(0, k).Select(j => new ClassScore((int)labels[row * k + j], adapter.ClassName((int)labels[row * k + j]), values[row * k + j])).ToList();
                        perImage[i].Add(new AdapterPrediction(adapter.Name, new ImagePrediction(files.EntryPath(index)!, scores)));
                    }
                }
                for (int i = 0; i < b; i++) results[batch.Indices[i]] = perImage[i];
            }
        }
        return results;
    }

    public void Dispose() => Model.Dispose();
}
