using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json.Nodes;
using PeftSharp.Data;
using PeftSharp.Results;
using PeftSharp.Studies;
using PeftSharp.Suite;
using PeftSharp.Tests.Cli;

namespace PeftSharp.Tests.Studies;

public class ManyShotTests
{
    static ManyShotCell C(string method, int size, double top1) => new(method, size, top1);

    [Fact]
    public void Full_fine_tuning_that_starts_behind_and_ends_ahead_catches_up_and_overtakes()
    {
        var cells = new[]
        {
            C("linear", 100, 65), C("full", 100, 50), C("lora", 100, 70), C("ssf", 100, 68),
            C("linear", 1000, 68), C("full", 1000, 69.5), C("lora", 1000, 78), C("ssf", 1000, 70),
            C("linear", 10000, 70), C("full", 10000, 85), C("lora", 10000, 84), C("ssf", 10000, 86),
        };
        var v = ManyShotStudy.CatchUp(cells);
        // full − best PEFT: 50 − 70, 69.5 − 78, 85 − 86 (the best PEFT method changes with the size).
        Assert.Equal(new[] { -20.0, -8.5, -1.0 }, v.Gaps.Select(g => g.Gap));
        Assert.Equal(new[] { "lora", "lora", "ssf" }, v.Gaps.Select(g => g.BestPeft));
        Assert.Equal(1, v.Gaps[^1].PeftBeaten);
        Assert.Equal(70, v.Gaps[^1].Linear);
        Assert.True(v.Narrows);
        Assert.Equal(10000, v.CatchesUpAt);   // within one point
        Assert.Null(v.OvertakesAt);
        Assert.Contains("catches up to within 1 point at 10,000 images but does not overtake", v.Text);
        Assert.Contains("Agrees.", v.Text);

        var ahead = ManyShotStudy.CatchUp(cells.Select(c => c.Method == "full" && c.TrainSize == 10000 ? c with { Top1 = 87 } : c).ToList());
        Assert.Equal(10000, ahead.OvertakesAt);
        Assert.Contains("catches up and overtakes", ahead.Text);
    }

    [Fact]
    public void A_gap_that_does_not_narrow_disagrees_and_one_size_says_nothing()
    {
        var flat = new[] { C("full", 100, 50), C("lora", 100, 60), C("full", 1000, 55), C("lora", 1000, 66) };
        var v = ManyShotStudy.CatchUp(flat);
        Assert.False(v.Narrows);
        Assert.Null(v.CatchesUpAt);
        Assert.Contains("Disagrees here.", v.Text);

        var already = ManyShotStudy.CatchUp(new[] { C("full", 100, 61), C("lora", 100, 60), C("full", 1000, 70), C("lora", 1000, 66) });
        Assert.Contains("already within 1 point", already.Text);

        var one = ManyShotStudy.CatchUp(new[] { C("full", 100, 50), C("lora", 100, 60), C("linear", 1000, 40) });
        Assert.Single(one.Gaps);
        Assert.StartsWith("Needs full fine-tuning and a PEFT method at two or more", one.Text);
    }

    /// <summary>A Fashion-MNIST folder in the package's layout, tiny: 100 training and 1000 test images of noise.</summary>
    static string TinyFashionMnist()
    {
        string dir = TestFiles.TempDir("fashion");
        var rng = new Random(7);
        void Write(string name, uint magic, int[] dims)
        {
            int count = dims.Aggregate(1, (a, b) => a * b);
            var bytes = new byte[4 + 4 * dims.Length + count];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, magic);
            for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * d), dims[d]);
            for (int i = 4 + 4 * dims.Length; i < bytes.Length; i++) bytes[i] = (byte)(magic == IdxDataset.LabelsMagic ? rng.Next(10) : rng.Next(256));
            using var file = File.Create(Path.Combine(dir, name));
            using var gzip = new GZipStream(file, CompressionLevel.Fastest);
            gzip.Write(bytes);
        }
        foreach (var (prefix, n) in new[] { ("train", 100), ("t10k", 1000) })
        {
            Write($"{prefix}-images-idx3-ubyte.gz", IdxDataset.ImagesMagic, new[] { n, 28, 28 });
            Write($"{prefix}-labels-idx1-ubyte.gz", IdxDataset.LabelsMagic, new[] { n });
        }
        return dir;
    }

    static CliRunner.Result ManyShot(string outDir, string data, params string[] args) =>
        CliRunner.Run(new[] { "study", "many-shot", "--quick", "--out", outDir, "--data", data, "--checkpoint", TestFiles.VitCheckpoint, "--epochs", "1" }
            .Concat(args).ToArray());

    [Fact]
    public void Many_shot_trains_one_keyed_run_per_method_and_size_and_a_rerun_trains_nothing()
    {
        string data = TinyFashionMnist(), dir = TestFiles.TempDir();
        var r = ManyShot(dir, data, "--sizes", "40,80", "--methods", "linear,lora", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!;
        var cells = json["cells"]!.AsArray();
        Assert.Equal(new[] { ("linear", 40), ("lora", 40), ("linear", 80), ("lora", 80) },
                     cells.Select(c => (c!["method"]!.GetValue<string>(), c["train_size"]!.GetValue<int>())));
        Assert.Empty(json["gaps"]!.AsArray());   // no full fine-tuning cell: nothing to compare it with
        // The chart: a line a method through its two sizes (40 left of 80), each point titled with the cell's top-1.
        var chart = SvgChart.WithLines(File.ReadAllText(Path.Combine(dir, "many-shot.html"))).Single();
        foreach (var (method, line) in new[] { "linear", "lora" }.Zip(chart.Lines))
        {
            var mine = cells.Where(c => c!["method"]!.GetValue<string>() == method).ToList();
            Assert.Equal(mine.Select(c => $"{method}: {c!["top1"]!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture)} at {c["train_size"]}"),
                         chart.PointsOf(method).Select(p => p.Title));
            Assert.Equal(chart.PointsOf(method).Select(p => (p.X, p.Y)), line);
            Assert.True(line[0].X < line[1].X);
        }
        Assert.Contains("training images (log scale)", chart.Texts);

        // The training-set size is part of each run's key: four runs, four keys, each split named by its size.
        using (var db = ResultsDb.Open(Path.Combine(dir, "results.db")))
        {
            var runs = db.Runs(new RunFilter(Dataset: ManyShotStudy.Dataset, Status: RunStatus.Finished));
            Assert.Equal(4, runs.Select(x => x.Key).Distinct().Count());
            Assert.Equal(new[] { "train[:40]", "train[:40]", "train[:80]", "train[:80]" }, runs.Select(x => x.Spec.TrainSplit));
            Assert.All(runs, x => Assert.Equal("t10k[:1000]", x.Spec.EvalSplit));
            // Each cell's top-1 is recomputed from its run's 1000 stored test predictions (argmax of the logits vs the label).
            Assert.All(runs, x => Assert.Equal(1000, db.Predictions(x.Id).Count));
            var stored = runs.ToDictionary(x => (x.Spec.Method, x.Spec.TrainSplit), x => StudyCommandTests.StoredTop1(db, x));
            Assert.All(cells, c => Assert.Equal(stored[(c!["method"]!.GetValue<string>(), $"train[:{c["train_size"]!.GetValue<int>()}]")],
                                                c!["top1"]!.GetValue<double>(), 3));
        }

        // Resumed, read-only: every cell comes from the database, nothing is trained.
        var again = ManyShot(dir, data, "--sizes", "40,80", "--methods", "linear,lora", "--no-train", "--quiet");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("| lora |", again.Stdout);

        // A size the database lacks cannot be read without training: one line naming the run.
        var missing = ManyShot(dir, data, "--sizes", "60", "--methods", "lora", "--no-train", "--quiet");
        CliRunner.AssertOneLineError(missing, "no finished run for many-shot lora n=60");
        Assert.Equal(2, missing.ExitCode);
    }

    [Fact]
    public void Missing_data_or_a_size_beyond_it_is_one_line_naming_what_is_missing()
    {
        var none = ManyShot(TestFiles.TempDir(), TestFiles.TempDir("empty"));
        CliRunner.AssertOneLineError(none, $"train-images-idx3-ubyte.gz not found: it comes with the Debian package {FashionMnist.Package}");
        Assert.Equal(2, none.ExitCode);

        var big = ManyShot(TestFiles.TempDir(), TinyFashionMnist(), "--sizes", "500");
        CliRunner.AssertOneLineError(big, "many-shot: a training set of 500 images does not fit");
        Assert.Equal(2, big.ExitCode);

        var tasks = ManyShot(TestFiles.TempDir(), TinyFashionMnist(), "--tasks", "digits");
        CliRunner.AssertOneLineError(tasks, "a task list does not apply");
    }
}
