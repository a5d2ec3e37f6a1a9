using System.Globalization;
using System.Text.Json.Nodes;
using PeftSharp.Results;
using PeftSharp.Studies;
using PeftSharp.Tests.Cli;

namespace PeftSharp.Tests.Studies;

/// <summary>The study verb end to end on the tiny fixture backbone (one rendered task, one epoch, seconds per run).</summary>
public class StudyCommandTests
{
    static CliRunner.Result Study(string outDir, params string[] args) => StudyOn("dsprites-loc", outDir, args);

    static CliRunner.Result StudyOn(string task, string outDir, params string[] args) =>
        CliRunner.Run(new[] { "study" }.Concat(args).Concat(new[] { "--quick", "--out", outDir, "--checkpoint", TestFiles.VitCheckpoint, "--tasks", task, "--epochs", "1" }).ToArray());

    /// <summary>Runs a study with --json on <paramref name="task"/>; checks it succeeded and that the printed JSON is
    /// the one written to DIR/NAME.json next to a DIR/NAME.html with a plot.</summary>
    static JsonNode StudyJson(string task, string dir, string study, string methods)
    {
        var r = StudyOn(task, dir, study, "--methods", methods, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(json.ToJsonString(), JsonNode.Parse(File.ReadAllText(Path.Combine(dir, study + ".json")))!.ToJsonString());
        Assert.Contains("<svg", File.ReadAllText(Path.Combine(dir, study + ".html")));
        return json;
    }

    [Fact]
    public void An_unknown_study_or_no_study_is_one_line_naming_the_studies()
    {
        var unknown = CliRunner.Run("study", "no-such-study", "--out", TestFiles.TempDir());
        CliRunner.AssertOneLineError(unknown, "unknown study 'no-such-study'; expected one of ensembles, robustness, capacity, many-shot");
        Assert.Equal(2, unknown.ExitCode);
        var none = CliRunner.Run("study");
        CliRunner.AssertOneLineError(none, "name a study");
        Assert.Equal(2, none.ExitCode);
    }

    [Fact]
    public void No_train_without_a_database_is_one_line_naming_the_database()
    {
        string dir = TestFiles.TempDir();
        var r = Study(dir, "ensembles", "--no-train");
        CliRunner.AssertOneLineError(r, "results.db: results database not found");
        Assert.Equal(2, r.ExitCode);
    }

    [Fact]
    public void Ensembles_trains_the_missing_runs_reports_what_the_stored_logits_give_and_reruns_from_the_database()
    {
        string dir = TestFiles.TempDir();
        var json = StudyJson("dsprites-loc", dir, "ensembles", "linear,bitfit,ssf");
        var task = json["tasks"]![0]!;
        Assert.Equal("dsprites-loc", task["task"]!.GetValue<string>());

        // The numbers are those of the test logits stored in the database.
        using (var db = ResultsDb.Open(Path.Combine(dir, "results.db")))
        {
            var members = new[] { "linear", "bitfit", "ssf" }.Select(m =>
            {
                var run = db.Runs(new RunFilter(Dataset: "dsprites-loc", Method: m, Stage: RunStage.Final, Status: RunStatus.Finished)).Single();
                var rows = db.Predictions(run.Id).OrderBy(p => p.Index).ToList();
                return (Logits: new MemberLogits(m, rows.Select(p => p.Logits).ToArray()), Labels: rows.Select(p => p.Label).ToArray());
            }).ToList();
            var expected = Ensemble.Evaluate(members.Select(m => m.Logits).ToList(), members[0].Labels, 200);
            var pair = task["pairs"]!.AsArray().Single(p => p!["a"]!.GetValue<string>() == "linear" && p["b"]!.GetValue<string>() == "bitfit")!;
            var want = expected.Pairs.Single(p => p.A == "linear" && p.B == "bitfit");
            Assert.Equal(want.BothWrong, pair["both_wrong"]!.GetValue<double>(), 3);
            Assert.Equal(want.Disagreement, pair["disagreement"]!.GetValue<double>(), 3);
            var all = task["ensembles"]!.AsArray().Single(e => e!["members"]!.AsArray().Count == 3 && e["rule"]!.GetValue<string>() == "logits")!;
            Assert.Equal(expected.Best(3, EnsembleRule.Logits)!.Top1, all["top1"]!.GetValue<double>(), 3);
            Assert.Equal(expected.BestSingle.Method, task["best_single"]!["method"]!.GetValue<string>());
            Assert.Equal(expected.BestSingle.Top1, task["best_single"]!["top1"]!.GetValue<double>(), 3);

            // The page's bars start with the three single models, best first, each as long as its top-1 of the
            // 560-pixel full scale (100 %) and labelled with it.
            var bars = SvgBar.All(File.ReadAllText(Path.Combine(dir, "ensembles.html"))).Take(3).ToList();
            var singles = expected.Singles.OrderByDescending(s => s.Top1).ToList();
            Assert.Equal(singles.Select(s => s.Method), bars.Select(b => b.Label));
            Assert.Equal(singles.Select(s => s.Top1.ToString("F2", CultureInfo.InvariantCulture) + " %"), bars.Select(b => b.Value));
            Assert.All(singles.Zip(bars), p => Assert.Equal(p.First.Top1 / 100 * 560, p.Second.Length, 0.05));
        }

        // Everything is in the database now: a read-only rerun trains nothing and reports the same.
        var again = Study(dir, "ensembles", "--methods", "linear,bitfit,ssf", "--no-train", "--quiet");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.DoesNotContain(": training ", again.Stdout);
        Assert.Contains("| dsprites-loc |", again.Stdout);

        // A method the database lacks cannot be read without training: one line naming the run.
        var missing = Study(dir, "ensembles", "--methods", "linear,lora", "--no-train", "--quiet");
        CliRunner.AssertOneLineError(missing, "no finished run for dsprites-loc lora");
        Assert.Equal(2, missing.ExitCode);
    }

    [Fact]
    public void Capacity_reports_one_cell_per_knob_value_with_its_trainable_parameters()
    {
        string dir = TestFiles.TempDir();
        var cells = StudyJson("dsprites-loc", dir, "capacity", "linear,lora")["cells"]!.AsArray();
        Assert.Equal(new[] { "linear", "lora", "lora", "lora" }, cells.Select(c => c!["method"]!.GetValue<string>()));
        Assert.Equal(0, cells[0]!["trainable_params"]!.GetValue<long>());
        // LoRA on qkv of the fixture (2 blocks, width 64): 2 · r · (64 + 3 · 64) parameters for ranks 1, 8 and 32.
        Assert.Equal(new long[] { 512, 4096, 16384 }, cells.Skip(1).Select(c => c!["trainable_params"]!.GetValue<long>()));
        Assert.Equal(new[] { null, "1", "8", "32" }, cells.Select(c => c!["value"]?.GetValue<string>()));

        // Each cell's top-1 is the share of its final run's stored test predictions whose largest logit is the label.
        using (var db = ResultsDb.Open(Path.Combine(dir, "results.db")))
        {
            var finals = db.Runs(new RunFilter(Dataset: "dsprites-loc", Stage: RunStage.Final, Status: RunStatus.Finished));
            foreach (var cell in cells)
            {
                string method = cell!["method"]!.GetValue<string>(), knob = cell["knob"]?.GetValue<string>() ?? "";
                var runs = finals.Where(r => r.Spec.Method == method && (knob == "" ||
                                              JsonNode.Parse(r.Spec.HyperJson)![method]![knob]!.ToString() == cell["value"]!.GetValue<string>())).ToList();
                Assert.NotEmpty(runs);
                Assert.Equal(runs.Average(r => StoredTop1(db, r)), cell["top1"]!.GetValue<double>(), 2);
            }
        }

        // The chart draws the same cells: one line a method, its points in order of trainable parameters, each titled
        // with the cell's top-1 and parameter count.
        var chart = SvgChart.WithLines(File.ReadAllText(Path.Combine(dir, "capacity.html"))).Single();
        Assert.Equal([1, 3], chart.Lines.Select(l => l.Count));
        Assert.Equal(cells.Select(c => $"{c!["method"]}: {c["top1"]!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture)} at {c["trainable_params"]!.GetValue<long>().ToString("G4", CultureInfo.InvariantCulture)}"),
                     chart.Points.Select(p => p.Title));
        Assert.Equal(chart.PointsOf("lora").Select(p => (p.X, p.Y)), chart.Lines[1]);
        Assert.True(chart.Lines[1][0].X < chart.Lines[1][1].X && chart.Lines[1][1].X < chart.Lines[1][2].X, "ranks 1, 8, 32 left to right");
        Assert.Contains("trainable parameters (log scale; the head excluded)", chart.Texts);
    }

    /// <summary>Top-1 (%) recomputed from a run's stored test predictions: argmax of the stored logits against the
    /// stored label, independently of the top-1 the run recorded.</summary>
    internal static double StoredTop1(ResultsDb db, RunRecord run)
    {
        var rows = db.Predictions(run.Id);
        Assert.NotEmpty(rows);
        int correct = rows.Count(p => Array.IndexOf(p.Logits, p.Logits.Max()) == p.Label);
        return 100.0 * correct / rows.Count;
    }

    [Fact]
    public void Robustness_scores_every_shift_and_its_wise_sweep_starts_at_the_linear_probe()
    {
        string dir = TestFiles.TempDir();
        var json = StudyJson("digits", dir, "robustness", "linear,lora,full");
        var methods = json["methods"]!.AsArray().ToDictionary(m => m!["method"]!.GetValue<string>());
        Assert.Equal(new[] { "full", "linear", "lora" }, methods.Keys.Order());
        var shifts = new[] { "gaussian-noise-3", "invert" };
        Assert.All(methods.Values, m => Assert.Equal(shifts.Order(), m!["shifted"]!.AsObject().Select(kv => kv.Key).Order()));
        // The rebuilt model is the tuned run's: every test prediction as stored, whether its weights came from the
        // store's adapter (linear, lora) or from training it again (full fine-tuning keeps no weights by default).
        Assert.All(methods.Values, m => Assert.Equal(100, m!["reproduced"]!.GetValue<double>()));
        var wise = json["wise"]!.AsArray().Where(p => p!["method"]!.GetValue<string>() == "lora").ToList();
        Assert.Equal(RobustnessStudy.Profile("quick").Alphas, wise.Select(p => p!["alpha"]!.GetValue<double>()));
        // α = 0 is the linear probe's model, so its accuracy is the probe's, to the last example.
        Assert.Equal(methods["linear"]!["in_dist"]!.GetValue<double>(), wise[0]!["in_dist"]!.GetValue<double>());
        Assert.Equal(methods["linear"]!["shifted_mean"]!.GetValue<double>(), wise[0]!["shifted_mean"]!.GetValue<double>());
        Assert.True(Directory.Exists(Path.Combine(dir, "suite", "digits@invert")));
        // Two charts for the task, a line per swept method (lora, full), a point per α: shifted mean against α, then
        // against the in-distribution top-1, both titled with the sweep's numbers in α order.
        var charts = SvgChart.WithLines(File.ReadAllText(Path.Combine(dir, "robustness.html")));
        Assert.Equal(2, charts.Count);
        static string F2(JsonNode? v) => v!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture);
        static string G4(JsonNode? v) => v!.GetValue<double>().ToString("G4", CultureInfo.InvariantCulture);
        Assert.Equal(wise.Select(p => $"lora: {F2(p!["shifted_mean"])} at {G4(p["alpha"])}"), charts[0].PointsOf("lora").Select(p => p.Title));
        Assert.Equal(wise.Select(p => $"lora: {F2(p!["shifted_mean"])} at {G4(p["in_dist"])}"), charts[1].PointsOf("lora").Select(p => p.Title));
        Assert.All(charts, c => Assert.Equal(2, c.Lines.Count));
        Assert.All(charts, c => Assert.Contains(c.Lines, line => line.SequenceEqual(c.PointsOf("lora").Select(p => (p.X, p.Y)))));
        Assert.True(charts[0].Lines.All(l => l.Zip(l.Skip(1)).All(p => p.First.X < p.Second.X)), "α increases left to right");
        Assert.Contains("α (0: linear probe, 1: fine-tuned)", charts[0].Texts);
        Assert.Contains("in-distribution top-1 %", charts[1].Texts);

        // Every evaluation is stored as it finishes: a resumed study, read-only, retrains and evaluates nothing and
        // reports the same numbers from the database.
        int stored = RunCount(dir);
        var again = StudyOn("digits", dir, "robustness", "--methods", "linear,lora,full", "--no-train", "--json");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.DoesNotContain("to evaluate it", again.Stderr);
        Assert.Equal(stored, RunCount(dir));
        var resumed = JsonNode.Parse(again.Stdout)!;
        Assert.Equal(json["methods"]!.ToJsonString(), resumed["methods"]!.ToJsonString());
        Assert.Equal(json["wise"]!.ToJsonString(), resumed["wise"]!.ToJsonString());
    }

    static int RunCount(string dir)
    {
        using var db = ResultsDb.Open(Path.Combine(dir, "results.db"));
        return db.Runs().Count;
    }

    [Fact]
    public void Robustness_on_a_task_without_shifts_is_one_line()
    {
        var r = Study(TestFiles.TempDir(), "robustness", "--methods", "linear,lora");
        CliRunner.AssertOneLineError(r, "robustness: 'dsprites-loc' is not a natural task");
        Assert.Equal(2, r.ExitCode);
    }
}
