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
    public void The_default_profile_runs_every_method_on_every_task_and_says_its_grid_was_cut()
    {
        var d = BenchProfile.Default;
        Assert.Equal(MiniVtab.Tasks.Select(t => t.Name), d.Tasks);
        Assert.Equal(PeftSharp.Tuners.TunerRegistry.All.Select(m => m.Id), d.Methods);
        Assert.Equal(new[] { 1e-3 }, d.LrsFor("full"));
        Assert.Equal(d.Lrs, d.LrsFor("lora"));
        Assert.Contains("no val200 search", d.GridDescription());
        Assert.Contains("(full: {0.001})", d.GridDescription());
        Assert.Contains("val200 selection", BenchProfile.Full.GridDescription());
        Assert.False(d.SearchesOnVal200);
        Assert.True(BenchProfile.Full.SearchesOnVal200);
        Assert.True((d with { MethodLrs = new Dictionary<string, IReadOnlyList<double>> { ["lora"] = new[] { 1e-3, 1e-2 } } }).SearchesOnVal200);
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
                cells.Add(new BenchCell(task, group, method, SuiteBenchmark.PretrainedBackbone, acc + (task == "d" ? 10 : 0), acc, p, 3, null, null));
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
        Assert.Contains(claims, c => c.Contains("Spearman"));
        Assert.Contains(claims, c => c.StartsWith("The default backbone is pretrained: its linear probe beats a random-init backbone's on 4 of 4 tasks (margin +30.0 to +40.0 points)."));
        Assert.Contains(claims, c => c.StartsWith("Once tuned") && c.Contains("(best lora, worst vpt-deep;") && c.Contains("nothing was tuned"));

        // A task where the random-init probe wins is named with both numbers.
        var outcome = Outcome();
        var cells = outcome.Cells.Select(c => c.Task == "b" && c.Backbone == SuiteBenchmark.RandomBackbone ? c with { TestTop1 = 55 } : c).ToList();
        var losing = new BenchReport(outcome with { Cells = cells }).Claims();
        Assert.Contains(losing, c => c.Contains("on 3 of 4 tasks") && c.EndsWith("it loses on b (50.0 vs 55.0)."));
    }

    [Fact]
    public void Html_is_self_contained_and_markdown_updates_the_readme_section()
    {
        var report = new BenchReport(Outcome());
        string html = report.Html();
        Assert.StartsWith("<!DOCTYPE html>", html);
        Assert.Contains("<svg", html);
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
