using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>Split sizes and label assignment shared by all tasks.</summary>
internal static class Plans
{
    public const int TrainCount = 800, ValCount = 200;
    const ulong TrainStream = 1, ValStream = 2, TestStream = 3;

    /// <summary>
    /// Labels 0..classes-1 repeated in turn, then shuffled. Val continues the cycle where train stopped, so train and
    /// train800val200 are balanced to within one image per class.
    /// </summary>
    public static int[] BalancedLabels(int count, int classes, int offset, SuiteRng rng)
    {
        var labels = new int[count];
        for (int i = 0; i < count; i++) labels[i] = (i + offset) % classes;
        rng.Shuffle(labels);
        return labels;
    }

    /// <summary>
    /// A task rendered from scratch: each item gets its own generator seeded by (task seed, split, index), so the
    /// image depends on nothing else and workers can render in any order.
    /// </summary>
    public static TaskPlan Procedural(SuiteTaskInfo info, ulong taskSeed, Func<RenderContext, SuiteRng, int, SuiteImage> render) =>
        Procedural(info, taskSeed, (context, rng, _, label) => render(context, rng, label));

    /// <summary>As above, for renderers that draw test items from a different pool than train and val.</summary>
    public static TaskPlan Procedural(SuiteTaskInfo info, ulong taskSeed, Func<RenderContext, SuiteRng, bool, int, SuiteImage> render)
    {
        SplitPlan Split(string name, ulong stream, int count, int offset)
        {
            int[] labels = BalancedLabels(count, info.NumClasses, offset, SuiteRng.For(taskSeed, stream, ulong.MaxValue));
            bool test = stream == TestStream;
            return new SplitPlan(name, labels, (context, i) => render(context, SuiteRng.For(taskSeed, stream, (ulong)i), test, labels[i]));
        }
        return new TaskPlan(Split("train", TrainStream, TrainCount, 0), Split("val", ValStream, ValCount, TrainCount),
            Split("test", TestStream, info.TestCount, 0));
    }

    /// <summary>
    /// A task cut from a shipped subset: the train-and-val pool is split per class (80 % train, the rest val) and
    /// every split's order is shuffled by the seed; the test pool is used whole.
    /// </summary>
    public static TaskPlan FromPools(ulong taskSeed, int numClasses, int[] trainValLabels, int[] testLabels,
        Func<RenderContext, SuiteRng, bool, int, SuiteImage> render)
    {
        var rng = SuiteRng.For(taskSeed, ulong.MaxValue);
        var train = new List<int>();
        var val = new List<int>();
        for (int c = 0; c < numClasses; c++)
        {
            var members = Enumerable.Range(0, trainValLabels.Length).Where(i => trainValLabels[i] == c).ToList();
            rng.Shuffle(members);
            int trainShare = (int)Math.Round(members.Count * TrainCount / (double)(TrainCount + ValCount));
            train.AddRange(members.Take(trainShare));
            val.AddRange(members.Skip(trainShare));
        }
        var test = Enumerable.Range(0, testLabels.Length).ToList();
        rng.Shuffle(train);
        rng.Shuffle(val);
        rng.Shuffle(test);

        SplitPlan Split(string name, ulong stream, List<int> items, int[] pool, bool fromTest) =>
            new(name, items.Select(i => pool[i]).ToArray(),
                (context, i) => render(context, SuiteRng.For(taskSeed, stream, (ulong)i), fromTest, items[i]));
        return new TaskPlan(Split("train", TrainStream, train, trainValLabels, false),
            Split("val", ValStream, val, trainValLabels, false), Split("test", TestStream, test, testLabels, true));
    }
}
