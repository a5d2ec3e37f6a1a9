using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Results;
using PeftSharp.Tests.Cli;
using PeftSharp.Tests.UserPath;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

/// <summary>--precision auto picks the faster precision this machine measured, and the run records the one it used.</summary>
public class PrecisionAutoTests
{
    static readonly PeftSharp.Models.VitConfig Shipped = ModelCheckpoints.ReadVitConfig(ShippedModels.DefaultVit);

    static void Seed(string cacheFile, double fp32Ms, double bf16Ms, PeftSharp.Models.VitConfig? config = null, int batch = 64)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(cacheFile)!);
        File.WriteAllText(cacheFile, new JsonObject { [PrecisionProbe.CacheKey(config ?? Shipped, batch)] = new JsonObject { ["fp32_ms"] = fp32Ms, ["bf16_ms"] = bf16Ms } }.ToJsonString());
    }

    static Dictionary<string, string> Cache(string dir) => new() { ["XDG_CACHE_HOME"] = Path.Combine(dir, "cache") };
    static string CacheFile(string dir) => Path.Combine(dir, "cache", "peftsharp", "precision-probe.json");

    [Fact]
    public void Bench_with_auto_decides_once_and_every_run_records_the_precision_it_used()
    {
        string dir = TestFiles.TempDir("precision-auto-bench");
        try
        {
            // The quick profile trains at batch 32; this machine "measured" bf16 three times faster for that shape.
            Seed(CacheFile(dir), fp32Ms: 30, bf16Ms: 10, ModelCheckpoints.ReadVitConfig(TestFiles.VitCheckpoint), batch: 32);
            string report = Path.Combine(dir, "report");
            var r = CliRunner.RunWith(null, Cache(dir), "bench", "--quick", "--out", report, "--checkpoint", TestFiles.VitCheckpoint,
                                      "--tasks", "dsprites-loc", "--methods", "linear", "--epochs", "1", "--precision", "auto", "--quiet");
            Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
            Assert.Single(r.Stderr.Split('\n'), l => l.Contains("precision auto: bf16"));
            using var store = ResultsStores.Open(Path.Combine(report, "results.db"));
            var runs = store.Runs();
            Assert.Equal(6, runs.Count);   // linear on the pretrained and on the random-init backbone: 2 search + 1 final each
            Assert.All(runs, run => Assert.Equal("bf16", JsonNode.Parse(run.Spec.TrainingJson)!["precision"]?.GetValue<string>()));
            Assert.Contains("; bf16.", File.ReadAllText(Path.Combine(report, "summary.md")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Study_with_auto_records_the_precision_it_used_in_every_run()
    {
        string dir = TestFiles.TempDir("precision-auto-study");
        try
        {
            // The study's quick profile trains at batch 32, like the bench's.
            Seed(CacheFile(dir), fp32Ms: 30, bf16Ms: 10, ModelCheckpoints.ReadVitConfig(TestFiles.VitCheckpoint), batch: 32);
            string outDir = Path.Combine(dir, "study");
            var r = CliRunner.RunWith(null, Cache(dir), "study", "ensembles", "--quick", "--out", outDir, "--checkpoint", TestFiles.VitCheckpoint,
                                      "--tasks", "dsprites-loc", "--epochs", "1", "--methods", "linear,bitfit", "--precision", "auto", "--quiet");
            Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
            Assert.Single(r.Stderr.Split('\n'), l => l.Contains("precision auto: bf16"));
            using var store = ResultsStores.Open(Path.Combine(outDir, "results.db"));
            var runs = store.Runs();
            Assert.NotEmpty(runs);
            Assert.All(runs, run => Assert.Equal("bf16", JsonNode.Parse(run.Spec.TrainingJson)!["precision"]?.GetValue<string>()));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData(30.0, 10.0, "bf16")]
    [InlineData(10.0, 30.0, "fp32")]
    public void Perf_with_auto_measures_in_the_precision_it_chose(double fp32Ms, double bf16Ms, string expected)
    {
        string dir = TestFiles.TempDir("precision-auto-perf");
        try
        {
            const string config = """{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}""";
            Seed(CacheFile(dir), fp32Ms, bf16Ms, PeftSharp.Models.VitConfig.Resolve(null, config)!, batch: 4);
            var r = CliRunner.RunWith(null, Cache(dir), "perf", "--config", config, "--methods", "lora,linear", "--batch", "4", "--steps", "1",
                                      "--warmup", "0", "--no-baseline", "--precision", "auto", "--json");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains($"precision auto: {expected}", r.Stderr);
            Assert.Equal(expected, JsonNode.Parse(r.Stdout)!["precision"]!.GetValue<string>());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void The_faster_measured_precision_is_chosen_and_a_fresh_measurement_is_cached()
    {
        string dir = TestFiles.TempDir("precision-auto");
        try
        {
            string cache = Path.Combine(dir, "probe.json");
            Seed(cache, fp32Ms: 30, bf16Ms: 10);
            var bf16 = PrecisionProbe.Choose(Shipped, 64, CPU, cache);
            Assert.Equal((Precision.BFloat16, true, 3.0), (bf16.Precision, bf16.Cached, bf16.Speedup));
            Seed(cache, fp32Ms: 10, bf16Ms: 30);
            Assert.Equal(Precision.Float32, PrecisionProbe.Choose(Shipped, 64, CPU, cache).Precision);

            var measured = PrecisionProbe.Choose(Shipped, 32, CPU, cache);   // another shape: measured, then cached
            Assert.False(measured.Cached);
            Assert.True(measured.Float32Ms > 0 && measured.BFloat16Ms > 0);
            Assert.Equal(measured.BFloat16Ms < measured.Float32Ms ? Precision.BFloat16 : Precision.Float32, measured.Precision);
            var again = PrecisionProbe.Choose(Shipped, 32, CPU, cache);
            Assert.Equal((measured.Precision, true, measured.Float32Ms), (again.Precision, again.Cached, again.Float32Ms));
            Assert.Equal(Precision.Float32, PrecisionProbe.Choose(Shipped, 64, new Device(TorchSharp.DeviceType.CUDA), cache).Precision);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData(30.0, 10.0, "bf16")]
    [InlineData(10.0, 30.0, null)]
    public void Train_with_auto_records_the_precision_it_used(double fp32Ms, double bf16Ms, string? recorded)
    {
        string dir = TestFiles.TempDir("precision-auto-cli");
        try
        {
            Seed(Path.Combine(dir, "cache", "peftsharp", "precision-probe.json"), fp32Ms, bf16Ms);
            string data = ClassFolders.Create(Path.Combine(dir, "photos"), perClass: 6), db = Path.Combine(dir, "r.db");
            var r = CliRunner.RunWith(null, new Dictionary<string, string> { ["XDG_CACHE_HOME"] = Path.Combine(dir, "cache") },
                "train", "--data", data, "--method", "linear", "--epochs", "1", "--precision", "auto", "--db", db, "--quiet");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains($"precision auto: {recorded ?? "fp32"}", r.Stderr);
            using var store = ResultsStores.Open(db);
            var training = JsonNode.Parse(store.Runs().Single().Spec.TrainingJson)!;
            Assert.Equal(recorded, training["precision"]?.GetValue<string>());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
