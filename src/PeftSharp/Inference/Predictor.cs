using PeftSharp.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Inference;

/// <summary>One class of a prediction: its label, name and softmax probability.</summary>
public sealed record ClassScore(int Label, string Name, double Probability);

/// <summary>The top classes of one image file, most probable first.</summary>
public sealed record ImagePrediction(string File, IReadOnlyList<ClassScore> Top);

/// <summary>Unlabelled image files to predict, in the order given. Labels are all 0 (nothing reads them).</summary>
public sealed class ImageFiles : ImageDataset
{
    readonly string[] paths;

    ImageFiles(string[] paths) : base($"{paths.Length} image file(s)", 1, null, false, Array.Empty<SkippedEntry>()) => this.paths = paths;

    public override int Count => paths.Length;
    public override int Label(int index) => 0;
    public override string? EntryPath(int index) => paths[index];

    public override bool TryReadImage(int index, out RgbImage? image, out SkippedEntry? problem)
    {
        if (ImageDecoder.TryDecode(paths[index], out image, out string? error))
        {
            problem = null;
            return true;
        }
        problem = new SkippedEntry(paths[index], null, error!);
        return false;
    }

    /// <summary>
    /// The images named by <paramref name="inputs"/>: image files as given, folders searched recursively for files
    /// with an image extension (sorted by path), and .txt lists of "path [label]" lines relative to the list's folder.
    /// A name that is none of these is an error naming it.
    /// </summary>
    public static ImageFiles Collect(IEnumerable<string> inputs)
    {
        var paths = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                var found = Directory.EnumerateFiles(input, "*", SearchOption.AllDirectories)
                    .Where(f => ImageDecoder.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                    .Order(StringComparer.Ordinal).ToList();
                if (found.Count == 0)
                    throw new PeftSharpException($"{input}: no images in this folder; expected files ending in {string.Join(", ", ImageDecoder.ImageExtensions)}");
                paths.AddRange(found);
            }
            else if (File.Exists(input) && Path.GetExtension(input).Equals(".txt", StringComparison.OrdinalIgnoreCase))
                paths.AddRange(ReadList(input));
            else if (File.Exists(input))
                paths.Add(input);
            else
                throw new PeftSharpException($"{input}: no such image file, folder or list");
        }
        if (paths.Count == 0) throw new PeftSharpException("no images to predict: name image files, folders or .txt lists");
        return new ImageFiles(paths.ToArray());
    }

    static IEnumerable<string> ReadList(string list)
    {
        string root = Path.GetDirectoryName(Path.GetFullPath(list))!;
        int line = 0;
        foreach (var raw in File.ReadLines(list))
        {
            line++;
            string text = raw.Trim();
            if (text.Length == 0) continue;
            // "path label" (a VTAB list) or a bare path; a path may contain spaces.
            int cut = text.LastIndexOfAny([' ', '\t']);
            string path = cut > 0 && int.TryParse(text[(cut + 1)..], out _) ? text[..cut].Trim() : text;
            string full = Path.Combine(root, path);
            if (!File.Exists(full)) throw new PeftSharpException($"{list} line {line}: image '{path}' not found in {root}");
            yield return full;
        }
    }
}

/// <summary>Classifies image files with a <see cref="Classifier"/>: the same loader and preprocessing as evaluation,
/// so a file's prediction is the one its evaluation counted.</summary>
public static class Predictor
{
    public static IReadOnlyList<ImagePrediction> Predict(IImageClassifier classifier, ImageFiles files, int topK = 5, int batchSize = 64,
                                                         Precision precision = Precision.Float32)
    {
        if (topK < 1) throw new PeftSharpException($"top-k: expected at least 1, got {topK}");
        int k = Math.Min(topK, classifier.NumClasses);
        var results = new ImagePrediction[files.Count];
        using var loader = classifier.Preprocessing.Loader(files, batchSize);
        using var _ = inference_mode();
        // The classifier's own layers cast once; a zero-shot CLIP classifier casts per batch under autocast as before.
        using var weights = CastOnce.Inference((classifier as Classifier)?.Model, precision);
        foreach (var batch in loader.Epoch(0))
        {
            using (batch)
            using (var scope = NewDisposeScope())
            {
                Tensor logits;
                using (Interop.Autocast.Enter(precision, batch.Images.device)) logits = classifier.Logits(batch.Images);
                var probabilities = nn.functional.softmax(logits.to(float32), 1);
                var top = probabilities.topk(k, 1);
                float[] values = top.values.data<float>().ToArray();
                long[] labels = top.indexes.data<long>().ToArray();
                for (int i = 0; i < batch.Size; i++)
                {
                    int index = batch.Indices[i];
                    results[index] = new ImagePrediction(files.EntryPath(index)!,
                        Enumerable.Range(0, k).Select(j => new ClassScore((int)labels[i * k + j], classifier.ClassName((int)labels[i * k + j]), values[i * k + j])).ToList());
                }
            }
        }
        return results;
    }
}
