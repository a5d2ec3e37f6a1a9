using PeftSharp.Benchmarks;
using PeftSharp.Evaluation;
using PeftSharp.Suite;

namespace PeftSharp.Tests.Benchmarks;

public class BenchReportTests
{
    [Fact]
    public void Ppt_reproduces_v_peft_bench_values()
    {
        Assert.Equal(0.71, Math.Round(Ppt.Compute(0.7225, 290_000), 2));
        Assert.Equal(0.53, Math.Round(Ppt.Compute(0.5294, 0), 2));
        Assert.Equal(0.72, Math.Round(Ppt.Compute(0.7310, 210_000), 2));
    }

    [Fact]
    public void Published_study_table_is_shipped_with_all_sixteen_methods()
    {
        var table = PublishedResults.UnifyingStudy;
        Assert.Equal(16, table.Count);
        Assert.Equal(75.24, table["lora"].MeanOfGroups);
        Assert.Equal(74.03, table["adapter-houlsby"].Mean19);
        Assert.All(PeftSharp.Tuners.TunerRegistry.StudyMethods, m => Assert.True(table.ContainsKey(m), m));
    }

    [Fact]
    public void The_default_profile_tunes_every_study_method_on_two_tasks_per_group_and_says_what_it_cut()
    {
        var d = BenchProfile.Default;
        Assert.Equal(6, d.Tasks.Count);
        Assert.All(new[] { TaskGroup.Natural, TaskGroup.Specialized, TaskGroup.Structured },
                   g => Assert.Equal(2, d.Tasks.Count(t => MiniVtab.Task(t).Group == g)));
        Assert.Equal(PeftSharp.Tuners.TunerRegistry.StudyMethods, d.Methods);
        Assert.True(d.SearchesOnVal200);
        // Every method searches at least two lrs; a method with a capacity knob also two of its values.
        Assert.All(d.Methods, m => Assert.True(d.LrsFor(m).Count >= 2, m));
        Assert.Equal(4, d.SearchPoints("lora"));
        Assert.Equal(new[] { "1", "8" }, d.GridFor("lora")["rank"]);
        Assert.Equal(2, d.SearchPoints("bitfit"));
        Assert.Equal(new[] { 3e-4, 1e-3 }, d.LrsFor("full"));
        Assert.Contains("search on the first 160 of train800, select on the first 40 of val200", d.Description());
        Assert.Contains("(full: {0.0003, 0.001})", d.Description());
        Assert.Contains("lora rank {1, 8}", d.Description());
        Assert.Contains("lr ∈ {0.001, 0.01} × wd ∈ {0.0001, 0.001} × the study's method grids", BenchProfile.Full.GridDescription());
        var single = d with { Lrs = new[] { 1e-2 }, MethodLrs = new Dictionary<string, IReadOnlyList<double>>(), MethodGrids = new Dictionary<string, IReadOnlyDictionary<string, string[]>>() };
        Assert.False(single.SearchesOnVal200);
        Assert.Contains("nothing to select", single.Description());
    }

    [Fact]
    public void Bad_profile_values_are_named()
    {
        Assert.Contains("unknown bench profile 'x'", Assert.Throws<PeftSharpException>(() => BenchProfile.Get("x")).Message);
        var seeds = Assert.Throws<PeftSharpException>(() => (BenchProfile.Quick with { Seeds = 0 }).Validate());
        Assert.Equal("seeds", seeds.Field);   // the library names its setting; the CLI maps it to --seeds
        Assert.Contains("seeds must be at least 1, got 0", seeds.Message);
        Assert.Contains("nope", Assert.Throws<PeftSharpException>(() => (BenchProfile.Quick with { Methods = new[] { "nope" } }).Validate()).Message);
    }

    static BenchOutcome Outcome()
    {
        var cells = new List<BenchCell>();
        var tasks = new[] { ("a", TaskGroup.Natural), ("b", TaskGroup.Specialized), ("c", TaskGroup.Structured), ("d", TaskGroup.Structured) };
        var methods = new Dictionary<string, (double Accuracy, long Params)>
        {
            ["linear"] = (50, 0), ["full"] = (55, 2_000_000), ["lora"] = (70, 30_000), ["ssf"] = (68, 20_000), ["vpt-deep"] = (65, 10_000),
        };
        foreach (var (task, group) in tasks)
        {
            foreach (var (method, (acc, p)) in methods)
            {
                double top1 = acc + (task == "d" ? 10 : 0);
                var correct = Enumerable.Range(0, 100).Select(i => i < top1).ToArray();
                cells.Add(new BenchCell(task, group, method, SuiteBenchmark.PretrainedBackbone, top1, acc, p, 3, null, null)
                          { TestCorrect = new[] { correct }, Configuration = $"lr 0.01 ({method})" });
            }
            cells.Add(new BenchCell(task, group, "linear", SuiteBenchmark.RandomBackbone, 20, 20, 0, 1, null, null));
        }
        var profile = BenchProfile.Quick with { Methods = methods.Keys.ToList(), Tasks = tasks.Select(t => t.Item1).ToList() };
        return new BenchOutcome(profile, cells, 60, "backbone.safetensors", "cpu");
    }

    [Fact]
    public void Summaries_average_groups_then_groups_and_compute_ppt()
    {
        var report = new BenchReport(Outcome());
        var lora = report.Summaries.Single(s => s.Method == "lora");
        Assert.Equal(70, lora.Natural);
        Assert.Equal(75, lora.Structured);   // tasks c (70) and d (80)
        Assert.Equal((70 + 70 + 75) / 3.0, lora.MeanOfGroups!.Value, 10);
        Assert.Equal((70 + 70 + 70 + 80) / 4.0, lora.MeanOfTasks!.Value, 10);
        Assert.Equal(Ppt.Compute(lora.MeanOfGroups!.Value / 100, 30_000), lora.Ppt!.Value, 12);
        Assert.Equal(new double?[] { 50, 50, 50, 60 }, report.PretrainingEvidence().Select(e => e.Pretrained));
        Assert.All(report.PretrainingEvidence(), e => Assert.Equal(20, e.Random));
    }

    [Fact]
    public void Claims_are_checked_against_our_numbers()
    {
        var claims = new BenchReport(Outcome()).Claims();
        Assert.Contains(claims, c => c.StartsWith("PEFT beats linear probing: 3 of 3") && c.Contains("Agrees"));
        Assert.Contains(claims, c => c.StartsWith("PEFT beats full fine-tuning: 3 of 3"));
        // Means of group means here: lora 71.67 > ssf 69.67 > vpt-deep 66.67 > full 56.67 > linear 51.67, the study's order
        // (75.24 > 75.12 > 73.40 > 61.85 > 60.52): ρ = 1.
        Assert.Contains("Ranking of the 5 methods by mean of group means vs the study's: Spearman ρ = 1.00 (similar order).", claims);
        Assert.Contains(claims, c => c.StartsWith("The default backbone is pretrained: its linear probe beats a random-init backbone's on 4 of 4 tasks (margin +30.0 to +40.0 points)."));
        Assert.Contains(claims, c => c.StartsWith("Once tuned") && c.Contains("(best lora, worst vpt-deep;") && !c.Contains("nothing was tuned"));
        Assert.Contains(claims, c => c.StartsWith("Every tuned PEFT method is within 8 points of LoRA") && c.Contains("largest gap 5.00 (vpt-deep)"));

        // A task where the random-init probe wins is named with both numbers.
        var outcome = Outcome();
        var cells = outcome.Cells.Select(c => c.Task == "b" && c.Backbone == SuiteBenchmark.RandomBackbone ? c with { TestTop1 = 55 } : c).ToList();
        var losing = new BenchReport(outcome with { Cells = cells }).Claims();
        Assert.Contains(losing, c => c.Contains("on 3 of 4 tasks") && c.EndsWith("it loses on b (50.0 vs 55.0)."));
    }

    /// <summary>One task per group, every method at the same top-1 on each, so its mean of group means is that top-1.</summary>
    static BenchReport Uniform(params (string Method, double Top1)[] methods)
    {
        var tasks = new[] { ("a", TaskGroup.Natural), ("b", TaskGroup.Specialized), ("c", TaskGroup.Structured) };
        var cells = (from t in tasks from m in methods
                     select new BenchCell(t.Item1, t.Item2, m.Method, SuiteBenchmark.PretrainedBackbone, m.Top1, m.Top1, 1000, 1, null, null)).ToList();
        var profile = BenchProfile.Quick with { Methods = methods.Select(m => m.Method).ToList(), Tasks = tasks.Select(t => t.Item1).ToList() };
        return new BenchReport(new BenchOutcome(profile, cells, 60, "backbone.safetensors", "cpu"));
    }

    [Fact]
    public void Rank_agreement_is_spearman_rho_with_tied_values_sharing_their_mean_rank()
    {
        // The study's means of group means: lora 75.24 > ssf 75.12 > bitfit 74.54 > vpt-deep 73.40 > linear 60.52,
        // ranks 1..5. Ours: bitfit 72 > lora 70 = ssf 70 > linear 65 > vpt-deep 60. Tied values share the mean of the
        // ranks they span: lora and ssf take (2 + 3) / 2 = 2.5 each, so ours are lora 2.5, ssf 2.5, bitfit 1,
        // vpt-deep 5, linear 4. ρ is Pearson's r of the two rank lists (both with mean 3):
        //   deviations ours  −0.5, −0.5, −2, 2, 1;  theirs −2, −1, 0, 1, 2
        //   Σ products = 1 + 0.5 + 0 + 2 + 2 = 5.5;  Σ squares 9.5 and 10;  ρ = 5.5 / √95 = 0.56428809...
        // (The no-ties shortcut 1 − 6 Σd² / (n (n² − 1)) would give 1 − 6 · 8.5 / 120 = 0.575; ranking the tie 2 and 3
        // in input order would give 6 / 10 = 0.6.)
        var tied = Uniform(("lora", 70), ("ssf", 70), ("bitfit", 72), ("vpt-deep", 60), ("linear", 65));
        var (rho, count) = tied.RankAgreement();
        Assert.Equal(5, count);
        Assert.Equal(5.5 / Math.Sqrt(95), rho!.Value, 12);
        Assert.Equal(0.56428809, rho.Value, 8);
        Assert.Contains("Ranking of the 5 methods by mean of group means vs the study's: Spearman ρ = 0.56 (similar order).", tied.Claims());

        // The study's order exactly reversed: ρ = −1, a different order.
        var reversed = Uniform(("lora", 60), ("ssf", 62), ("bitfit", 64), ("vpt-deep", 66), ("linear", 68));
        Assert.Equal(-1, reversed.RankAgreement().Rho!.Value, 12);
        Assert.Contains(reversed.Claims(), c => c.EndsWith("Spearman ρ = -1.00 (different order)."));

        // Fewer than three methods shared with the study: no ρ, and no claim.
        var two = Uniform(("lora", 60), ("ssf", 62));
        Assert.Equal((null, 2), two.RankAgreement());
        Assert.DoesNotContain(two.Claims(), c => c.Contains("Spearman"));
    }

    [Fact]
    public void Methods_are_ranked_with_intervals_tiers_and_their_chosen_configurations()
    {
        var report = new BenchReport(Outcome());
        var lora = report.Summaries.Single(s => s.Method == "lora").Comparison!;
        Assert.Equal(1, lora.Tier);
        Assert.True(lora.Low <= lora.Score && lora.Score <= lora.High);
        // ssf is right on a subset of lora's images, two fewer of every hundred: paired, that is significant.
        Assert.True(report.Summaries.Single(s => s.Method == "ssf").Comparison!.DiffersFromBest);
        string md = report.Markdown();
        Assert.Contains("| 1 | lora |", md);
        Assert.Contains("| tier | method |", md);
        Assert.Contains("lr 0.01 (ssf)", md);
        Assert.Contains("Machine:", md);
        // V-PETL Bench's published row beside ours (README table: LoRA 72.25, 0.29M), with what it is.
        var loraRow = md.Split('\n').First(l => l.StartsWith("| 1 | lora |"));
        Assert.EndsWith("| 72.25 (0.29M) |", loraRow);
        Assert.Contains("V-PETL Bench's VTAB-1K mean is the plain mean of 19 tasks", md);
        Assert.Contains("keep the best test epoch", report.Html());
        Assert.Equal(new[] { "linear", "vpt-deep", "ssf", "lora" }, BenchReport.ParetoFront(report.Summaries).Select(s => s.Method));
        string html = report.Html();
        foreach (var section in new[] { "Pareto front", "Per-task accuracy", "Agreement with the unifying study", "Configuration chosen on val200" })
            Assert.Contains(section, html);
    }

    [Fact]
    public void Html_is_self_contained_and_markdown_updates_the_readme_section()
    {
        var report = new BenchReport(Outcome());
        string html = report.Html();
        Assert.StartsWith("<!DOCTYPE html>", html);
        // The Pareto scatter: one marked point a method, titled with its mean of group means and parameters, and the
        // front's line through exactly the front's points (linear, vpt-deep, ssf, lora), left to right and upwards.
        var scatter = SvgChart.WithLines(html).Single();
        Assert.Equal(["lora: 71.67% with 30,000 parameters", "ssf: 69.67% with 20,000 parameters", "vpt-deep: 66.67% with 10,000 parameters",
                      "full: 56.67% with 2,000,000 parameters", "linear: 51.67% with 0 parameters"], scatter.Points.Select(p => p.Title));
        var at = scatter.Points.ToDictionary(p => p.Title.Split(':')[0], p => (p.X, p.Y));
        Assert.Equal(new[] { "linear", "vpt-deep", "ssf", "lora" }.Select(m => at[m]), scatter.Lines.Single());
        Assert.True(at["full"].X > at["lora"].X && at["full"].Y > at["vpt-deep"].Y, "full: most parameters, below vpt-deep");
        Assert.Contains("trainable parameters (log scale; the head excluded)", scatter.Texts);
        Assert.Contains("mean of group means, test top-1 %", scatter.Texts);
        Assert.DoesNotContain("<script src", html);
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org/2000/svg", ""));
        string readme = Path.Combine(TestFiles.TempDir(), "README.md");
        File.WriteAllText(readme, "intro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\nafter\n");
        BenchReport.UpdateReadme(readme, report.Markdown());
        string text = File.ReadAllText(readme);
        Assert.DoesNotContain("old", text);
        Assert.Contains("| lora |", text);
        Assert.EndsWith("<!-- bench:end -->\nafter\n", text);
    }
}
