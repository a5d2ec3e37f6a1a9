namespace PeftSharp.Evaluation;

/// <summary>One method's test results: per task (with its group), per seed, whether each test example was right.
/// Every method must have the same tasks, the same number of seeds and, per task, the same test examples in the same
/// order, since the comparison is paired.</summary>
public sealed record MethodResults(string Method, IReadOnlyList<TaskResults> Tasks);

public sealed record TaskResults(string Task, string Group, IReadOnlyList<bool[]> CorrectPerSeed);

/// <summary>A method's score (mean of group means, %), its 95 % bootstrap interval, its two-sided p-value against
/// the best method, and its tier: tier 1 is the best and every method not significantly worse than it; tier 2 the
/// best of the rest and those not significantly worse than that one; and so on.</summary>
public sealed record MethodComparison(string Method, double Score, double Low, double High, double PValueVsBest, bool DiffersFromBest, int Tier);

/// <summary>
/// Paired bootstrap of the VTAB score (mean over groups of the mean over tasks of the mean over seeds of test top-1).
/// Each replicate redraws, for every task, the test examples with replacement and the seeds with replacement, the
/// same draws for every method, so the methods' differences keep their pairing: two methods that err on the same
/// images are not counted as independent. This captures test-set and seed noise (not the noise of the tasks being
/// a sample of tasks: with six tasks that would swamp everything).
/// </summary>
public static class PairedBootstrap
{
    public const double Alpha = 0.05;

    /// <summary>The score as defined above, without resampling.</summary>
    public static double Score(MethodResults method) =>
        method.Tasks.GroupBy(t => t.Group).Average(g => g.Average(t => t.CorrectPerSeed.Average(c => Accuracy(c))));

    static double Accuracy(bool[] correct) => correct.Length == 0 ? 0 : 100.0 * correct.Count(x => x) / correct.Length;

    public static IReadOnlyList<MethodComparison> Compare(IReadOnlyList<MethodResults> methods, int replicates = 2000, int seed = 0)
    {
        if (methods.Count == 0) return Array.Empty<MethodComparison>();
        CheckPaired(methods);
        var scores = methods.Select(Score).ToArray();
        var draws = Replicates(methods, replicates, seed);   // [method][replicate]
        int best = Array.IndexOf(scores, scores.Max());
        var tiers = Tiers(scores, draws);
        return methods.Select((m, i) =>
        {
            var sorted = draws[i].Order().ToArray();
            double p = i == best ? 1 : PValue(draws[best], draws[i]);
            return new MethodComparison(m.Method, scores[i], Percentile(sorted, 0.025), Percentile(sorted, 0.975), p, p < Alpha, tiers[i]);
        }).ToList();
    }

    static void CheckPaired(IReadOnlyList<MethodResults> methods)
    {
        var reference = methods[0];
        foreach (var m in methods)
        {
            if (!m.Tasks.Select(t => t.Task).SequenceEqual(reference.Tasks.Select(t => t.Task)))
                throw new PeftSharpException($"paired bootstrap: {m.Method} has tasks [{string.Join(", ", m.Tasks.Select(t => t.Task))}], expected [{string.Join(", ", reference.Tasks.Select(t => t.Task))}]");
            foreach (var (t, r) in m.Tasks.Zip(reference.Tasks))
            {
                if (t.CorrectPerSeed.Count == 0 || t.CorrectPerSeed.Count != r.CorrectPerSeed.Count)
                    throw new PeftSharpException($"paired bootstrap: {m.Method} on {t.Task} has {t.CorrectPerSeed.Count} seeds, expected {r.CorrectPerSeed.Count} (at least 1)");
                if (t.CorrectPerSeed.Any(c => c.Length != r.CorrectPerSeed[0].Length))
                    throw new PeftSharpException($"paired bootstrap: {m.Method} on {t.Task} has a different number of test examples than {reference.Method}");
            }
        }
    }

    /// <summary>The score of every method on every replicate, all methods sharing each replicate's draws.</summary>
    static double[][] Replicates(IReadOnlyList<MethodResults> methods, int replicates, int seed)
    {
        var random = new Random(seed);
        var tasks = methods[0].Tasks;
        var groups = tasks.Select(t => t.Group).Distinct().ToList();
        var result = methods.Select(_ => new double[replicates]).ToArray();
        var accuracy = new double[methods.Count, tasks.Count];
        for (int b = 0; b < replicates; b++)
        {
            for (int t = 0; t < tasks.Count; t++)
            {
                int seeds = tasks[t].CorrectPerSeed.Count, examples = tasks[t].CorrectPerSeed[0].Length;
                var seedDraw = Enumerable.Range(0, seeds).Select(_ => random.Next(seeds)).ToArray();
                var exampleDraw = Enumerable.Range(0, examples).Select(_ => random.Next(examples)).ToArray();
                for (int m = 0; m < methods.Count; m++)
                {
                    var perSeed = methods[m].Tasks[t].CorrectPerSeed;
                    long hits = 0;
                    foreach (int s in seedDraw)
                    {
                        var correct = perSeed[s];
                        foreach (int e in exampleDraw) if (correct[e]) hits++;
                    }
                    accuracy[m, t] = 100.0 * hits / ((long)seeds * examples);
                }
            }
            for (int m = 0; m < methods.Count; m++)
                result[m][b] = groups.Average(g => Enumerable.Range(0, tasks.Count).Where(t => tasks[t].Group == g).Average(t => accuracy[m, t]));
        }
        return result;
    }

    /// <summary>Two-sided p-value of "a and b score the same", from the paired replicate differences.</summary>
    static double PValue(double[] a, double[] b)
    {
        int n = a.Length, atMostZero = 0, atLeastZero = 0;
        for (int i = 0; i < n; i++)
        {
            double d = a[i] - b[i];
            if (d <= 0) atMostZero++;
            if (d >= 0) atLeastZero++;
        }
        return Math.Min(1, 2.0 * Math.Min(atMostZero, atLeastZero) / n);
    }

    static int[] Tiers(double[] scores, double[][] draws)
    {
        var tiers = new int[scores.Length];
        var left = Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ToList();
        for (int tier = 1; left.Count > 0; tier++)
        {
            int leader = left[0];
            var members = left.Where(i => i == leader || PValue(draws[leader], draws[i]) >= Alpha).ToList();
            foreach (int i in members) tiers[i] = tier;
            left.RemoveAll(members.Contains);
        }
        return tiers;
    }

    static double Percentile(double[] sorted, double q)
    {
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
