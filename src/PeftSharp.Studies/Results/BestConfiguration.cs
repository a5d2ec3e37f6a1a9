namespace PeftSharp.Results;

/// <summary>
/// The one rule that picks a search's configuration: the highest validation top-1; on a tie the lower lr, then the
/// lower weight decay, then the hyperparameter JSON in byte order. Two search runs of one sweep that tie on all four
/// are the same configuration (the same key), so the choice never depends on row order, engine or collation. The
/// in-process protocol, the results store's <c>--best</c> and the sweep queue's selection all use it: the SQL order
/// is generated from the same list as the in-process comparison, and text columns sort byte-wise in both engines.
/// </summary>
public static class BestConfiguration
{
    /// <summary>(column, descending, the run's value): the order, first key first.</summary>
    static readonly (string Column, bool Descending, Func<RunRecord, object> Value)[] Keys =
    [
        ("top1", true, r => r.Top1!.Value),
        ("lr", false, r => r.Spec.Lr),
        ("weight_decay", false, r => r.Spec.WeightDecay),
        ("hyper_json", false, r => r.Spec.HyperJson),
    ];

    /// <summary>The rule as an SQL ORDER BY list over the runs table (aliased <paramref name="alias"/>, or not).</summary>
    public static string OrderBySql(string? alias = null) =>
        string.Join(", ", Keys.Select(k => $"{(alias == null ? "" : alias + ".")}{k.Column} {(k.Descending ? "DESC" : "ASC")}"));

    /// <summary>The best finished run with a score, by the rule; among exact ties (the same configuration run twice
    /// under different keys) the first in <paramref name="runs"/>' order.</summary>
    public static RunRecord? Best(IEnumerable<RunRecord> runs)
    {
        RunRecord? best = null;
        foreach (var run in runs.Where(r => r.Status == RunStatus.Finished && r.Top1 != null))
            if (best == null || Compare(run, best) < 0) best = run;
        return best;
    }

    /// <summary>Negative when <paramref name="a"/> ranks before <paramref name="b"/>.</summary>
    public static int Compare(RunRecord a, RunRecord b)
    {
        foreach (var (_, descending, value) in Keys)
        {
            int c = (value(a), value(b)) switch
            {
                (double x, double y) => x.CompareTo(y),
                (string x, string y) => string.CompareOrdinal(x, y),
                var (x, y) => throw new InvalidOperationException($"no order for {x.GetType().Name}"),
            };
            if (c != 0) return descending ? -c : c;
        }
        return 0;
    }
}
