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

    static void Seed(string cacheFile, double fp32Ms, double bf16Ms)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(cacheFile)!);
        File.WriteAllText(cacheFile, new JsonObject { [PrecisionProbe.CacheKey(Shipped, 64)] = new JsonObject { ["fp32_ms"] = fp32Ms, ["bf16_ms"] = bf16Ms } }.ToJsonString());
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
