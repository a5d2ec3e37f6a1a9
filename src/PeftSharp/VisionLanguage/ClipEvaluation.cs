using PeftSharp.Interop;
using System.Globalization;
using PeftSharp.Data;
using PeftSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.VisionLanguage;

/// <summary>Recall@1/5/10 in both directions, in % of the queries; <see cref="Mean"/> averages the six (the study's
/// retrieval score, rsum / 6).</summary>
public sealed record RetrievalScores(double ImageToTextR1, double ImageToTextR5, double ImageToTextR10,
                                     double TextToImageR1, double TextToImageR5, double TextToImageR10)
{
    public double Mean => (ImageToTextR1 + ImageToTextR5 + ImageToTextR10 + TextToImageR1 + TextToImageR5 + TextToImageR10) / 6;

    public IReadOnlyDictionary<string, double> ToDictionary() => new Dictionary<string, double>
    {
        ["i2t_r1"] = ImageToTextR1, ["i2t_r5"] = ImageToTextR5, ["i2t_r10"] = ImageToTextR10,
        ["t2i_r1"] = TextToImageR1, ["t2i_r5"] = TextToImageR5, ["t2i_r10"] = TextToImageR10, ["mean_recall"] = Mean,
    };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"image→text R@1/5/10 {ImageToTextR1:F1}/{ImageToTextR5:F1}/{ImageToTextR10:F1}, text→image {TextToImageR1:F1}/{TextToImageR5:F1}/{TextToImageR10:F1}, mean {Mean:F1}");
}

/// <summary>Zero-shot (or prompt-head) classification: top-1 in %, and every example's class logits.</summary>
public sealed record ClassificationScores(double Top1, float[][] Logits, int[] Predicted);

/// <summary>Evaluates a CLIP model on caption sets: image–text retrieval and classification through class prompts.</summary>
public static class ClipEvaluation
{
    /// <summary>Normalised image and text features of every pair, [N, embed] each, on the CPU.</summary>
    public static (Tensor Images, Tensor Texts) Embed(ClipModel model, CaptionSet set, Normalization normalization, int batchSize = 256,
                                                      Precision precision = Precision.Float32)
    {
        var device = model.logit_scale.device;
        var images = new List<Tensor>();
        var texts = new List<Tensor>();
        InEvalMode(model, precision, () =>
        {
            foreach (var indices in Batches(set.Count, batchSize))
            {
                using var stepScope = NativeHeap.StepScope(device.type);
                var pixels = set.Images(indices, normalization, device);
                var tokens = CaptionSet.Tokenize(indices.Select(i => set.Captions[i]).ToArray(), model.Config.Text.ContextLength, out _).to(device);
                images.Add(model.EncodeImage(pixels, normalize: true).to(float32).cpu().MoveToOuterDisposeScope());
                texts.Add(model.EncodeText(tokens, normalize: true).to(float32).cpu().MoveToOuterDisposeScope());
            }
        });
        var result = (cat(images, 0), cat(texts, 0));
        foreach (var t in images.Concat(texts)) t.Dispose();
        return result;
    }

    /// <summary>Retrieval over the whole set: every image queries all captions and every caption all images; a hit
    /// is any item of the query's group within the top k.</summary>
    public static RetrievalScores Retrieval(ClipModel model, CaptionSet set, Normalization normalization, Precision precision = Precision.Float32)
    {
        var (images, texts) = Embed(model, set, normalization, precision: precision);
        using (images) using (texts) return Retrieval(images, texts, set.Groups);
    }

    /// <summary>Recall@k from normalised features: row i of <paramref name="images"/> pairs with row i of
    /// <paramref name="texts"/>; rows of one group are all correct answers for each other.</summary>
    public static RetrievalScores Retrieval(Tensor images, Tensor texts, IReadOnlyList<int> groups)
    {
        using var scope = NewDisposeScope();
        var similarity = images.matmul(texts.t());
        var g = tensor(groups.Select(x => (long)x).ToArray());
        double[] Recall(Tensor scores)
        {
            int k = (int)Math.Min(10, scores.shape[1]);
            var top = scores.topk(k, dim: 1).indexes; // [N, k]
            var hit = g[top].eq(g.unsqueeze(1)).to_type(ScalarType.Int32).cumsum(1).gt(0); // hit within the first j+1
            return new[] { 1, 5, 10 }.Select(r => 100.0 * hit[.., Math.Min(r, k) - 1].to_type(ScalarType.Float64).mean().item<double>()).ToArray();
        }
        var i2t = Recall(similarity);
        var t2i = Recall(similarity.t());
        return new RetrievalScores(i2t[0], i2t[1], i2t[2], t2i[0], t2i[1], t2i[2]);
    }

    /// <summary>Normalised text features of the class prompts, [classes, embed], on the model's device.</summary>
    public static Tensor ClassEmbeddings(ClipModel model, IReadOnlyList<string> prompts)
    {
        using var tokens = CaptionSet.Tokenize(prompts, model.Config.Text.ContextLength, out _).to(model.logit_scale.device);
        return model.EncodeText(tokens, normalize: true);
    }

    /// <summary>Classifies every image of a classification set by its most similar class prompt.</summary>
    public static ClassificationScores Classify(ClipModel model, CaptionSet set, Normalization normalization, int batchSize = 256,
                                                Precision precision = Precision.Float32)
    {
        if (!set.IsClassification) throw new PeftSharpException($"{set.Name}: not a classification set (no labels and class prompts)");
        var device = model.logit_scale.device;
        var logits = new float[set.Count][];
        InEvalMode(model, precision, () =>
        {
            using var classes = ClassEmbeddings(model, set.ClassPrompts!);
            foreach (var indices in Batches(set.Count, batchSize))
            {
                using var stepScope = NativeHeap.StepScope(device.type);
                var batch = ClipLosses.ClassLogits(model.EncodeImage(set.Images(indices, normalization, device)), classes, model.logit_scale).to(float32).cpu();
                int width = (int)batch.shape[1];
                var flat = batch.data<float>().ToArray();
                for (int i = 0; i < indices.Length; i++) logits[indices[i]] = flat.AsSpan(i * width, width).ToArray();
            }
        });
        var predicted = logits.Select(row => Array.IndexOf(row, row.Max())).ToArray();
        double top1 = 100.0 * predicted.Where((p, i) => p == set.Labels![i]).Count() / set.Count;
        return new ClassificationScores(top1, logits, predicted);
    }

    /// <summary>Runs <paramref name="body"/> with the model in eval mode under inference mode, its products in
    /// <paramref name="precision"/>, then restores its mode.</summary>
    static void InEvalMode(ClipModel model, Precision precision, Action body)
    {
        bool training = model.training;
        model.eval();
        try
        {
            using (inference_mode())
            using (Autocast.Enter(precision, model.logit_scale.device))
            using (CastOnce.Inference(model, precision))
                body();
        }
        finally { model.train(training); }
    }

    /// <summary>Consecutive index batches covering 0 … count − 1.</summary>
    static IEnumerable<int[]> Batches(int count, int batchSize)
    {
        for (int start = 0; start < count; start += batchSize)
            yield return Enumerable.Range(start, Math.Min(batchSize, count - start)).ToArray();
    }
}
