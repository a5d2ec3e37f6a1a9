using PeftSharp.Evaluation;

namespace PeftSharp.Tests.Evaluation;

public class PairedBootstrapTests
{
    static bool[] Correct(int examples, int right, int offset = 0) =>
        Enumerable.Range(0, examples).Select(i => (i + offset) % examples < right).ToArray();

    static MethodResults Method(string name, params (string Task, string Group, bool[][] Seeds)[] tasks) =>
        new(name, tasks.Select(t => new TaskResults(t.Task, t.Group, t.Seeds)).ToList());

    [Fact]
    public void The_score_is_the_mean_over_groups_of_task_means_of_seed_means()
    {
        // Group a: tasks at 50 % and 70 % → 60; group b: seeds at 80 % and 90 % → 85; mean of groups 72.5.
        var m = Method("m", ("t1", "a", new[] { Correct(10, 5) }), ("t2", "a", new[] { Correct(10, 7) }),
                            ("t3", "b", new[] { Correct(10, 8), Correct(10, 9) }));
        Assert.Equal(72.5, PairedBootstrap.Score(m), 10);
    }

    [Fact]
    public void Identical_methods_are_never_significantly_different_and_share_a_tier()
    {
        var seeds = new[] { Correct(500, 350) };
        var methods = new[] { Method("a", ("t", "g", seeds)), Method("b", ("t", "g", seeds)) };
        var result = PairedBootstrap.Compare(methods);
        Assert.All(result, r => Assert.Equal(1, r.Tier));
        Assert.All(result, r => Assert.False(r.DiffersFromBest));
        Assert.Equal(70, result[0].Score, 10);
        Assert.InRange(result[0].Low, 65, 70);
        Assert.InRange(result[0].High, 70, 75);
    }

    [Fact]
    public void Pairing_detects_a_small_difference_on_the_same_images_that_independent_intervals_would_miss()
    {
        // b gets right exactly the images a gets right plus 10 more out of 1000 (70 % vs 71 %): the intervals overlap,
        // but every paired replicate has b ahead, so the difference is significant.
        var a = Method("a", ("t", "g", new[] { Correct(1000, 700) }));
        var b = Method("b", ("t", "g", new[] { Correct(1000, 710) }));
        var result = PairedBootstrap.Compare(new[] { a, b }).ToDictionary(r => r.Method);
        Assert.True(result["a"].High > result["b"].Low, "the two intervals overlap");
        Assert.True(result["a"].DiffersFromBest);
        Assert.Equal(1, result["b"].Tier);
        Assert.Equal(2, result["a"].Tier);
        Assert.False(result["b"].DiffersFromBest);
    }

    [Fact]
    public void Methods_that_err_on_different_images_with_the_same_accuracy_are_not_different()
    {
        var a = Method("a", ("t", "g", new[] { Correct(1000, 700) }));
        var b = Method("b", ("t", "g", new[] { Correct(1000, 700, offset: 150) }));
        var result = PairedBootstrap.Compare(new[] { a, b });
        Assert.All(result, r => Assert.Equal(1, r.Tier));
    }

    [Fact]
    public void Unpaired_inputs_are_rejected_with_the_method_named()
    {
        var a = Method("a", ("t", "g", new[] { Correct(100, 50) }));
        var b = Method("b", ("t", "g", new[] { Correct(90, 50) }));
        var e = Assert.Throws<PeftSharpException>(() => PairedBootstrap.Compare(new[] { a, b }));
        Assert.Contains("b on t", e.Message);
    }
}
