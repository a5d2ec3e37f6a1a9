namespace PeftSharp.Studies;

/// <summary>One classifier's logits on an evaluation split, one row per example, rows in example order.</summary>
public sealed record MemberLogits(string Method, float[][] Logits)
{
    public int Count => Logits.Length;

    /// <summary>The predicted class per example (the first of tied maxima, as torch.argmax).</summary>
    public int[] Predicted() => Logits.Select(Ensemble.ArgMax).ToArray();
}

/// <summary>How two classifiers' mistakes overlap, as percentages of the examples: both right, both wrong, exactly one
/// right (<see cref="Disagreement"/>; the three add up to 100), and how often the predicted labels differ at all
/// (which also counts two different wrong answers).</summary>
public sealed record PairOverlap(string A, string B, double BothRight, double BothWrong, double Disagreement, double DifferentPredictions);

/// <summary>How many of the k examples each of two classifiers is most confident about (highest softmax probability)
/// they share; <see cref="Jaccard"/> is shared / union.</summary>
public sealed record ConfidentOverlap(string A, string B, int K, int Shared, double Jaccard);

/// <summary>How an ensemble combines its members: the mean of their logits, or the mean of their softmax probabilities.</summary>
public enum EnsembleRule { Logits, Probabilities }

/// <summary>An ensemble's members, rule and test top-1 (%).</summary>
public sealed record EnsembleScore(IReadOnlyList<string> Members, EnsembleRule Rule, double Top1);

/// <summary>Everything <see cref="Ensemble.Evaluate"/> measures on one task.</summary>
public sealed record EnsembleAnalysis(
    IReadOnlyList<(string Method, double Top1)> Singles, IReadOnlyList<PairOverlap> Pairs, IReadOnlyList<ConfidentOverlap> Confident,
    int ConfidentK, int ConfidentSharedByAll, IReadOnlyList<EnsembleScore> Ensembles)
{
    public (string Method, double Top1) BestSingle => Singles.OrderByDescending(s => s.Top1).ThenBy(s => s.Method, StringComparer.Ordinal).First();

    /// <summary>The best ensemble of <paramref name="size"/> members under <paramref name="rule"/>, if any was scored.</summary>
    public EnsembleScore? Best(int size, EnsembleRule rule) =>
        Ensembles.Where(e => e.Members.Count == size && e.Rule == rule).OrderByDescending(e => e.Top1).FirstOrDefault();
}

/// <summary>
/// The unifying study's second finding, as pure functions over stored logits and labels: tuned PEFT methods make
/// different mistakes and are confident about different examples, so averaging them beats the best of them.
/// </summary>
public static class Ensemble
{
    /// <summary>Pairwise overlap, top-k confident overlap and every ensemble of 2, 3 and all members under both rules.
    /// <paramref name="confidentK"/> is capped at the number of examples.</summary>
    public static EnsembleAnalysis Evaluate(IReadOnlyList<MemberLogits> members, int[] labels, int confidentK)
    {
        CheckShapes(members, labels);
        int k = Math.Min(confidentK, labels.Length);
        var singles = members.Select(m => (m.Method, Top1(m.Predicted(), labels))).ToList();
        var pairs = new List<PairOverlap>();
        var confident = new List<ConfidentOverlap>();
        foreach (var (a, b) in Pairs(members))
        {
            pairs.Add(Overlap(a.Method, a.Predicted(), b.Method, b.Predicted(), labels));
            confident.Add(TopKOverlap(a, b, k));
        }
        var ensembles = Subsets(members.Count)
            .SelectMany(s => new[] { EnsembleRule.Logits, EnsembleRule.Probabilities }.Select(rule =>
            {
                var chosen = s.Select(i => members[i]).ToList();
                return new EnsembleScore(chosen.Select(m => m.Method).ToList(), rule, Top1(Predict(chosen, rule), labels));
            }))
            .ToList();
        return new EnsembleAnalysis(singles, pairs, confident, k, SharedByAll(members, k), ensembles);
    }

    /// <summary>Both right / both wrong / exactly one right / different labels, in % of the examples.</summary>
    public static PairOverlap Overlap(string a, int[] predictedA, string b, int[] predictedB, int[] labels)
    {
        if (predictedA.Length != labels.Length || predictedB.Length != labels.Length)
            throw new PeftSharpException($"overlap of {a} and {b}: {predictedA.Length} and {predictedB.Length} predictions for {labels.Length} labels");
        int bothRight = 0, bothWrong = 0, one = 0, different = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            bool ra = predictedA[i] == labels[i], rb = predictedB[i] == labels[i];
            if (ra && rb) bothRight++;
            else if (!ra && !rb) bothWrong++;
            else one++;
            if (predictedA[i] != predictedB[i]) different++;
        }
        double Pct(int n) => labels.Length == 0 ? 0 : 100.0 * n / labels.Length;
        return new PairOverlap(a, b, Pct(bothRight), Pct(bothWrong), Pct(one), Pct(different));
    }

    /// <summary>The shared part of two members' k most confident examples.</summary>
    public static ConfidentOverlap TopKOverlap(MemberLogits a, MemberLogits b, int k)
    {
        var sa = MostConfident(a.Logits, k).ToHashSet();
        var sb = MostConfident(b.Logits, k);
        int shared = sb.Count(sa.Contains);
        int union = sa.Count + sb.Length - shared;
        return new ConfidentOverlap(a.Method, b.Method, k, shared, union == 0 ? 0 : (double)shared / union);
    }

    /// <summary>How many examples lie in every member's top-k confident set.</summary>
    public static int SharedByAll(IReadOnlyList<MemberLogits> members, int k)
    {
        if (members.Count == 0) return 0;
        var shared = MostConfident(members[0].Logits, k).ToHashSet();
        foreach (var m in members.Skip(1)) shared.IntersectWith(MostConfident(m.Logits, k));
        return shared.Count;
    }

    /// <summary>Indices of the k examples with the highest softmax probability of the predicted class (ties: lower index).</summary>
    public static int[] MostConfident(float[][] logits, int k) =>
        logits.Select((row, i) => (Confidence: Softmax(row).Max(), Index: i))
              .OrderByDescending(x => x.Confidence).ThenBy(x => x.Index).Take(k).Select(x => x.Index).ToArray();

    /// <summary>The ensemble's predicted class per example: argmax of the members' mean logits or mean probabilities.</summary>
    public static int[] Predict(IReadOnlyList<MemberLogits> members, EnsembleRule rule)
    {
        if (members.Count == 0) throw new PeftSharpException("an ensemble needs at least one member");
        int n = members[0].Count, classes = n == 0 ? 0 : members[0].Logits[0].Length;
        var predicted = new int[n];
        var sum = new double[classes];
        for (int i = 0; i < n; i++)
        {
            Array.Clear(sum);
            foreach (var m in members)
            {
                var row = m.Logits[i];
                var values = rule == EnsembleRule.Logits ? row.Select(v => (double)v).ToArray() : Softmax(row);
                for (int c = 0; c < classes; c++) sum[c] += values[c];
            }
            predicted[i] = ArgMax(sum);
        }
        return predicted;
    }

    /// <summary>Top-1 in % (0 for no examples).</summary>
    public static double Top1(int[] predicted, int[] labels) =>
        labels.Length == 0 ? 0 : 100.0 * predicted.Zip(labels).Count(p => p.First == p.Second) / labels.Length;

    /// <summary>Numerically stable softmax in double precision.</summary>
    public static double[] Softmax(float[] logits)
    {
        double max = logits.Max();
        var e = logits.Select(v => Math.Exp(v - max)).ToArray();
        double total = e.Sum();
        return e.Select(v => v / total).ToArray();
    }

    public static int ArgMax(float[] values) => ArgMax(values.Select(v => (double)v).ToArray());

    public static int ArgMax(double[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>The member subsets the study scores: every pair, every triple and all members (each set once).</summary>
    public static IReadOnlyList<int[]> Subsets(int count)
    {
        var sizes = new[] { 2, 3, count }.Where(s => s >= 2 && s <= count).Distinct();
        return sizes.SelectMany(s => Combinations(count, s)).ToList();
    }

    static IEnumerable<int[]> Combinations(int n, int size)
    {
        var current = new int[size];
        IEnumerable<int[]> From(int start, int depth)
        {
            if (depth == size) { yield return (int[])current.Clone(); yield break; }
            for (int i = start; i <= n - (size - depth); i++)
            {
                current[depth] = i;
                foreach (var c in From(i + 1, depth + 1)) yield return c;
            }
        }
        return From(0, 0);
    }

    static IEnumerable<(MemberLogits A, MemberLogits B)> Pairs(IReadOnlyList<MemberLogits> members) =>
        from i in Enumerable.Range(0, members.Count) from j in Enumerable.Range(i + 1, members.Count - i - 1) select (members[i], members[j]);

    static void CheckShapes(IReadOnlyList<MemberLogits> members, int[] labels)
    {
        if (members.Count == 0) throw new PeftSharpException("ensembles: no members");
        foreach (var m in members)
        {
            if (m.Count != labels.Length)
                throw new PeftSharpException($"ensembles: {m.Method} has {m.Count} predictions for {labels.Length} labels");
            if (m.Logits.Select(r => r.Length).Distinct().Count() > 1 || (m.Count > 0 && m.Logits[0].Length != members[0].Logits[0].Length))
                throw new PeftSharpException($"ensembles: {m.Method}'s logits do not all have {members[0].Logits[0].Length} classes");
        }
    }
}
