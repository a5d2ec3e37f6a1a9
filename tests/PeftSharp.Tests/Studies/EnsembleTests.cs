using PeftSharp.Studies;

namespace PeftSharp.Tests.Studies;

public class EnsembleTests
{
    /// <summary>Logits of 1 for the predicted class and 0 elsewhere: averaging them (logits or probabilities) is a vote.</summary>
    static MemberLogits OneHot(string method, int classes, params int[] predicted) =>
        new(method, predicted.Select(p => Enumerable.Range(0, classes).Select(c => c == p ? 1f : 0f).ToArray()).ToArray());

    [Fact]
    public void Pair_overlap_counts_both_right_both_wrong_and_exactly_one_right()
    {
        int[] labels = { 0, 1, 2, 0 };
        // A right on 0 and 1; B right on 0 and 2; both wrong on 3, with the same wrong answer.
        var o = Ensemble.Overlap("a", new[] { 0, 1, 0, 1 }, "b", new[] { 0, 2, 2, 1 }, labels);
        Assert.Equal(25, o.BothRight);
        Assert.Equal(25, o.BothWrong);
        Assert.Equal(50, o.Disagreement);
        Assert.Equal(50, o.DifferentPredictions);
    }

    [Fact]
    public void Three_classifiers_wrong_on_different_examples_vote_to_a_perfect_ensemble()
    {
        int[] labels = { 0, 1, 2 };
        var a = OneHot("a", 3, 0, 1, 0);   // wrong on example 2
        var b = OneHot("b", 3, 0, 0, 2);   // wrong on example 1
        var c = OneHot("c", 3, 1, 1, 2);   // wrong on example 0
        var analysis = Ensemble.Evaluate(new[] { a, b, c }, labels, confidentK: 3);

        Assert.All(analysis.Singles, s => Assert.Equal(200.0 / 3, s.Top1, 9));
        Assert.Equal("a", analysis.BestSingle.Method);   // a tie goes to the first name
        // Three pairs and the triple, each under both rules.
        Assert.Equal(8, analysis.Ensembles.Count);
        Assert.Equal(100, analysis.Best(3, EnsembleRule.Logits)!.Top1);
        Assert.Equal(100, analysis.Best(3, EnsembleRule.Probabilities)!.Top1);
        // a + b: agree (right) on 0; split 1–0 on example 1 and 0–2 on example 2, where the tie goes to class 0.
        var ab = analysis.Ensembles.Single(e => e.Members.SequenceEqual(new[] { "a", "b" }) && e.Rule == EnsembleRule.Logits);
        Assert.Equal(100.0 / 3, ab.Top1, 9);
        var pairAb = analysis.Pairs.Single(p => p.A == "a" && p.B == "b");
        Assert.Equal(100.0 / 3, pairAb.BothRight, 9);
        Assert.Equal(0, pairAb.BothWrong);
        Assert.Equal(200.0 / 3, pairAb.Disagreement, 9);
    }

    [Fact]
    public void Logit_and_probability_averaging_differ_when_one_member_has_huge_logits()
    {
        // a is sure of class 1 with a logit of 20; b and c prefer class 0 by 6. Mean logits: (4, 6.67) → 1.
        // Mean probabilities: b and c give class 0 about 0.9975 each, a about 0 → (0.665, 0.335) → 0.
        var a = new MemberLogits("a", new[] { new[] { 0f, 20f } });
        var b = new MemberLogits("b", new[] { new[] { 6f, 0f } });
        var c = new MemberLogits("c", new[] { new[] { 6f, 0f } });
        Assert.Equal(new[] { 1 }, Ensemble.Predict(new[] { a, b, c }, EnsembleRule.Logits));
        Assert.Equal(new[] { 0 }, Ensemble.Predict(new[] { a, b, c }, EnsembleRule.Probabilities));
        var analysis = Ensemble.Evaluate(new[] { a, b, c }, new[] { 0 }, confidentK: 1);
        Assert.Equal(0, analysis.Best(3, EnsembleRule.Logits)!.Top1);
        Assert.Equal(100, analysis.Best(3, EnsembleRule.Probabilities)!.Top1);
    }

    [Fact]
    public void Top_k_confident_sets_rank_examples_by_the_softmax_of_the_predicted_class()
    {
        // Confidence grows with the margin between the two logits.
        var a = new MemberLogits("a", new[] { new[] { 5f, 0f }, new[] { 1f, 0f }, new[] { 0f, 3f }, new[] { 0f, 0.5f } });   // order 0, 2, 1, 3
        var b = new MemberLogits("b", new[] { new[] { 0.1f, 0f }, new[] { 4f, 0f }, new[] { 0f, 2f }, new[] { 0f, 9f } });   // order 3, 1, 2, 0
        Assert.Equal(new[] { 0, 2 }, Ensemble.MostConfident(a.Logits, 2));
        Assert.Equal(new[] { 3, 1 }, Ensemble.MostConfident(b.Logits, 2));
        var two = Ensemble.TopKOverlap(a, b, 2);
        Assert.Equal(0, two.Shared);
        Assert.Equal(0, two.Jaccard);
        var three = Ensemble.TopKOverlap(a, b, 3);   // {0, 2, 1} and {3, 1, 2}
        Assert.Equal(2, three.Shared);
        Assert.Equal(0.5, three.Jaccard);
        Assert.Equal(2, Ensemble.SharedByAll(new[] { a, b }, 3));
        Assert.Equal(4, Ensemble.SharedByAll(new[] { a, b }, 4));
    }

    [Fact]
    public void Subsets_are_every_pair_every_triple_and_all_members_once()
    {
        Assert.Single(Ensemble.Subsets(2));
        Assert.Equal(3 + 1, Ensemble.Subsets(3).Count);
        var four = Ensemble.Subsets(4);
        Assert.Equal(6 + 4 + 1, four.Count);
        Assert.Equal(four.Count, four.Select(s => string.Join(",", s)).Distinct().Count());
        Assert.Contains(four, s => s.SequenceEqual(new[] { 0, 1, 2, 3 }));
    }

    [Fact]
    public void Members_with_a_different_number_of_predictions_are_refused_by_name()
    {
        var a = OneHot("a", 2, 0, 1);
        var b = OneHot("b", 2, 0);
        var e = Assert.Throws<PeftSharpException>(() => Ensemble.Evaluate(new[] { a, b }, new[] { 0, 1 }, 1));
        Assert.Contains("b has 1 predictions for 2 labels", e.Message);
    }
}
