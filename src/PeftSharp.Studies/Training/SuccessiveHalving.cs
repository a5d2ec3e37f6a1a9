using System.Globalization;
using PeftSharp.Results;

namespace PeftSharp.Training;

/// <summary>
/// Successive halving over a tune's grid (Jamieson &amp; Talwalkar 2016; Hyperband's inner loop): every configuration
/// trains a short run, the best 1/η of them (by the study's selection rule, <see cref="BestConfiguration"/>: val top-1
/// at the run's last epoch, ties by lr, wd, hyperparameters) go on to a run η times longer, until one is left; that
/// one is the search's choice and is retrained on train800val200 as the grid's choice would be.
/// </summary>
/// <param name="Eta">The reduction factor: each rung keeps ⌈n/η⌉ of its n configurations and gives them η× the budget.</param>
/// <param name="TopFraction">The budget of the last rung (the one that leaves one configuration) as a fraction of a
/// grid search run's (its epochs × training images); each earlier rung has 1/η of the next one's.</param>
public sealed record HalvingSearch(int Eta = 2, double TopFraction = 0.25)
{
    /// <summary>The rungs for a grid of <paramref name="points"/> configurations: how many each trains, and the
    /// fraction of a full run's budget each of them gets. Empty for one point (nothing to select).</summary>
    public IReadOnlyList<Rung> Rungs(int points)
    {
        Validate();
        var counts = new List<int>();
        for (int n = points; n > 1; n = (n + Eta - 1) / Eta) counts.Add(n);
        return counts.Select((n, k) => new Rung(k, counts.Count, n, TopFraction / Math.Pow(Eta, counts.Count - 1 - k))).ToList();
    }

    public HalvingSearch Validate()
    {
        if (Eta < 2) throw new PeftSharpException("eta", $"successive halving: the reduction factor must be at least 2, got {Eta}");
        if (!(TopFraction > 0 && TopFraction <= 1)) throw new PeftSharpException("top fraction", $"successive halving: the last rung's budget must be in (0, 1] of a full run's, got {TopFraction.ToString(CultureInfo.InvariantCulture)}");
        return this;
    }

    /// <summary>"halving (η 2, last rung 1/4 of a run)".</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"successive halving (η {Eta}, last rung {TopFraction:G3} of a full run's images)");

    /// <summary>
    /// Runs the rungs: <paramref name="run"/>(point, rung) trains (or reads back) that configuration's run of the rung.
    /// Returns every rung's runs, the chosen point and its run in the last rung (null when no run of a rung finished).
    /// </summary>
    public (IReadOnlyList<RunRecord> Runs, int? Chosen, RunRecord? ChosenRun) Select(int points, Func<int, Rung, RunRecord> run)
    {
        var alive = Enumerable.Range(0, points).Select(p => (Point: p, Run: (RunRecord?)null)).ToList();
        var runs = new List<RunRecord>();
        foreach (var rung in Rungs(points))
        {
            var scored = alive.Select(a => (a.Point, Run: (RunRecord?)run(a.Point, rung))).ToList();
            runs.AddRange(scored.Select(s => s.Run!));
            var ranked = scored.Where(s => s.Run!.Status == RunStatus.Finished && s.Run.Top1 != null)
                               .OrderBy(s => s.Run!, Comparer<RunRecord>.Create(BestConfiguration.Compare)).ToList();
            if (ranked.Count == 0) return (runs, null, null);
            // The survivors, best first (the last rung's first is the choice), then trained in grid order.
            alive = ranked.Take((alive.Count + Eta - 1) / Eta).ToList();
            if (alive.Count > 1) alive = alive.OrderBy(a => a.Point).ToList();
        }
        return alive.Count == 0 ? (runs, null, null) : (runs, alive[0].Point, alive[0].Run);
    }
}

/// <summary>One rung of successive halving: <see cref="Index"/> of <see cref="Of"/>, <see cref="Configurations"/> trained,
/// each on <see cref="Fraction"/> of a full search run's training images (epochs × images).</summary>
public sealed record Rung(int Index, int Of, int Configurations, double Fraction)
{
    /// <summary>A full run of <paramref name="epochs"/> epochs over <paramref name="images"/> images, shortened to this
    /// rung's budget: fewer epochs (rounded down) while a whole epoch fits, else one epoch over a prefix of the images.</summary>
    public (int Epochs, int Images) Budget(int epochs, int images)
    {
        double runEpochs = Fraction * epochs;
        return runEpochs >= 1 - 1e-9
            ? (Math.Max(1, (int)Math.Floor(runEpochs + 1e-9)), images)
            : (1, Math.Clamp((int)Math.Round(runEpochs * images), 1, images));
    }

    public override string ToString() => $"rung {Index + 1}/{Of}";
}
