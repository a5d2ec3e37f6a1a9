using PeftSharp.Data;
using PeftSharp.Suite;

namespace PeftSharp.VisionLanguage;

/// <summary>
/// A downstream vision-language task: its training pairs, test pairs, objective and score (mean recall for
/// retrieval, top-1 for classification, both in %), and whether its data and task are of the kind the shipped CLIP
/// was pretrained on (the vision-language study's distinction).
/// </summary>
public sealed record VlTask(string Name, string Description, bool ConsistentWithPretraining, ClipObjective Objective,
                            CaptionSet Train, CaptionSet Test)
{
    public string Metric => Objective == ClipObjective.Contrastive ? "mean recall@1/5/10 (both directions)" : "top-1";

    /// <summary>The first <paramref name="fraction"/> of the training pairs (at least 2: a contrastive batch needs a
    /// negative), in a fixed seeded order, so a smaller fraction is a prefix of a larger one.</summary>
    public CaptionSet TrainFraction(double fraction)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new PeftSharpException($"data fraction {fraction}: expected a number in (0, 1]");
        int count = Math.Max(2, (int)Math.Round(fraction * Train.Count));
        var order = Enumerable.Range(0, Train.Count).ToArray();
        SuiteRng.For(SuiteRng.Hash(Name), 0xF4AC).Shuffle(order);
        return Train.Subset(order.Take(count).ToArray(), $"{Name} train[:{count}]");
    }
}

/// <summary>The two downstream tasks of the vision-language study.</summary>
public static class VlTasks
{
    public const string SceneRetrieval = "scene-retrieval", FashionPrompts = "fashion-prompts";
    public static IReadOnlyList<string> Names { get; } = [SceneRetrieval, FashionPrompts];
    const ulong TrainStream = 0x564C5452, TestStream = 0x564C5445; // "VLTR", "VLTE": disjoint from pretraining's

    /// <summary>
    /// scene-retrieval: image–caption retrieval on fresh CaptionScenes, the pretraining data's own kind (consistent).
    /// fashion-prompts: Fashion-MNIST garments classified through the prompts "a photo of a trouser", … — grey
    /// photographs of clothes and words the pretraining captions never contain (not consistent). The suite's
    /// fashion-mnist task (1000 train, 1000 test) is materialised under <paramref name="suiteDir"/>.
    /// </summary>
    public static VlTask Load(string name, string suiteDir, int imageSize = CaptionScenes.Size) => name switch
    {
        SceneRetrieval => new VlTask(name, "retrieval between fresh captioned scenes (1000 train, 500 test pairs), of the kind CLIP was pretrained on",
            true, ClipObjective.Contrastive, Scenes("scene-retrieval train", 1000, TrainStream, unique: false),
            Scenes("scene-retrieval test", 500, TestStream, unique: true)),
        FashionPrompts => Fashion(name, suiteDir, imageSize),
        _ => throw new PeftSharpException($"unknown vision-language task '{name}'; expected one of {string.Join(", ", Names)}"),
    };

    /// <summary>Scenes from one seed stream; with <paramref name="unique"/> no two pairs show the same scene, so a
    /// retrieval query has exactly one right answer.</summary>
    public static CaptionSet Scenes(string name, int count, ulong stream, bool unique)
    {
        var seen = new HashSet<string>();
        var items = new List<CaptionedImage>();
        for (ulong i = 0; items.Count < count; i++)
        {
            var item = CaptionScenes.Render(SuiteRng.Mix(stream, i));
            if (!unique || seen.Add(item.SceneKey)) items.Add(item);
        }
        var keys = CaptionSet.GroupsOf(items.Select(s => s.SceneKey).ToArray());
        return new CaptionSet(name, CaptionScenes.Size, items.Select(s => s.Pixels).ToArray(), items.Select(s => s.Caption).ToArray(), groups: keys);
    }

    public static string ClassPrompt(string className) => $"a photo of a {className.Replace('/', ' ').ToLowerInvariant()}";

    static VlTask Fashion(string name, string suiteDir, int imageSize)
    {
        var task = VtabTask.Open(MiniVtab.Materialize(suiteDir, taskNames: new[] { "fashion-mnist" })[0].Directory);
        var prompts = (task.ClassNames ?? throw new PeftSharpException($"{task.Directory}: no classes.txt")).Select(ClassPrompt).ToArray();
        CaptionSet Read(ImageDataset split, string splitName)
        {
            var pixels = Enumerable.Range(0, split.Count).Select(i => CaptionSet.ToSquare(split.ReadImage(i), imageSize)).ToArray();
            var labels = Enumerable.Range(0, split.Count).Select(split.Label).ToArray();
            return new CaptionSet($"{name} {splitName}", imageSize, pixels, labels.Select(l => prompts[l]).ToArray(), labels: labels, classPrompts: prompts);
        }
        return new VlTask(name, "Fashion-MNIST garments (1000 train, 1000 test) classified through 10 class prompts: data and words unlike the pretraining captions",
            false, ClipObjective.Classification, Read(task.Train800Val200, "train"), Read(task.Test, "test"));
    }
}
