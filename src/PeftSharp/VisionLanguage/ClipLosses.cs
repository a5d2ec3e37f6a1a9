using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.VisionLanguage;

/// <summary>The two training objectives of a CLIP model: contrastive (image–text matching) and classification
/// through the text tower's class-prompt embeddings (zero-shot head, as CoOp and CLIP-Adapter train).</summary>
public static class ClipLosses
{
    /// <summary>
    /// CLIP's symmetric InfoNCE (open_clip ClipLoss): logits = s · norm(img) · norm(txt)ᵀ with s = exp(logit_scale),
    /// cross-entropy over texts for each image and over images for each text, averaged. Pairs of one
    /// <paramref name="groups"/> value (identical captions) are all positives, with the target spread evenly over
    /// them; without repeats this is exactly open_clip's loss (target = the diagonal).
    /// </summary>
    public static Tensor Contrastive(Tensor imageFeatures, Tensor textFeatures, Tensor logitScale, IReadOnlyList<int>? groups = null)
    {
        var logits = logitScale.exp() * F.normalize(imageFeatures, dim: -1).matmul(F.normalize(textFeatures, dim: -1).t());
        long n = logits.shape[0];
        if (groups == null || groups.Distinct().Count() == groups.Count)
        {
            var labels = arange(n, device: logits.device);
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2;
        }
        if (groups.Count != n) throw new ArgumentException($"{groups.Count} group ids for a batch of {n}", nameof(groups));
        var g = tensor(groups.Select(x => (long)x).ToArray(), device: logits.device);
        var same = g.unsqueeze(1).eq(g.unsqueeze(0)).to_type(logits.dtype);
        var targets = same / same.sum(1, keepdim: true); // symmetric, so it serves both directions
        var perImage = -(targets * F.log_softmax(logits, 1)).sum(1).mean();
        var perText = -(targets * F.log_softmax(logits.t(), 1)).sum(1).mean();
        return (perImage + perText) / 2;
    }

    /// <summary>Class logits s · norm(img) · norm(class text)ᵀ: [B, classes].</summary>
    public static Tensor ClassLogits(Tensor imageFeatures, Tensor classTextFeatures, Tensor logitScale) =>
        logitScale.exp() * F.normalize(imageFeatures, dim: -1).matmul(F.normalize(classTextFeatures, dim: -1).t());
}
