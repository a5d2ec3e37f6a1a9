using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PeftSharp.Interop;
using PeftSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Training;

/// <summary>The precision <c>auto</c> chose and why (the two GEMM times it compared).</summary>
public sealed record PrecisionChoice(Precision Precision, double Float32Ms, double BFloat16Ms, bool Cached, string Shape)
{
    public double Speedup => Float32Ms / BFloat16Ms;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"precision auto: {Autocast.Name(Precision)} (a {Shape} GEMM takes {Float32Ms:F2} ms in fp32, {BFloat16Ms:F2} ms in bf16 on this CPU{(Cached ? ", measured before" : "")})");
}

/// <summary>
/// Picks the faster precision for a model on this machine: times the model's largest matrix product (the MLP's
/// first layer at the batch's token count) in float32 and under bfloat16 autocast, and keeps the faster. CPUs differ:
/// with AVX-512 BF16 or AMX, bf16 products run 2–3× faster; without them libtorch emulates bf16 and it is slower. The
/// choice is cached per CPU model, flags and shape in the user's cache folder, so later runs decide at once.
/// </summary>
public static class PrecisionProbe
{
    const int Repeats = 7;

    /// <summary>The faster precision for <paramref name="config"/> at <paramref name="batchSize"/> images a step.
    /// Anything but the CPU keeps float32 (nothing here measures another device).</summary>
    public static PrecisionChoice Choose(VitConfig config, int batchSize, Device device, string? cacheFile = null)
    {
        var (rows, width, hidden) = Shape(config, batchSize);
        string shape = $"{rows}x{width}x{hidden}";
        if (device.type != DeviceType.CPU) return new PrecisionChoice(Precision.Float32, 0, 0, false, shape);
        cacheFile ??= DefaultCacheFile;
        string key = CacheKey(config, batchSize);
        if (ReadCache(cacheFile, key) is (double f32, double b16))
            return new PrecisionChoice(b16 < f32 ? Precision.BFloat16 : Precision.Float32, f32, b16, true, shape);
        var (fp32Ms, bf16Ms) = Measure(rows, width, hidden);
        WriteCache(cacheFile, key, fp32Ms, bf16Ms);
        return new PrecisionChoice(bf16Ms < fp32Ms ? Precision.BFloat16 : Precision.Float32, fp32Ms, bf16Ms, false, shape);
    }

    /// <summary>The probe's product: the MLP's first layer at the step's token count, capped at a few hundred MFLOP
    /// (large enough to reach the kernels' steady rate, short enough to be cheap).</summary>
    static (long Rows, int Width, int Hidden) Shape(VitConfig config, int batchSize)
    {
        long rows = (long)batchSize * (config.GridSize * config.GridSize + config.NumPrefixTokens);
        int width = config.EmbedDim, hidden = (int)(config.EmbedDim * config.MlpRatio);
        return (Math.Clamp(rows, 256, Math.Max(256, 400_000_000L / (2L * width * hidden))), width, hidden);
    }

    /// <summary>Where a measurement for this machine and shape is cached (this CPU's model, flags and cores).</summary>
    public static string CacheKey(VitConfig config, int batchSize)
    {
        var (rows, width, hidden) = Shape(config, batchSize);
        return $"{MachineKey()} {rows}x{width}x{hidden}";
    }

    /// <summary>Median milliseconds of x·Wᵀ (x [rows, width], W [hidden, width]) in each precision, interleaved so a
    /// busy machine slows both alike.</summary>
    static (double Float32, double BFloat16) Measure(long rows, int width, int hidden)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var x = randn(rows, width);
        var w = randn(hidden, width);
        var fp32 = new List<double>();
        var bf16 = new List<double>();
        for (int i = 0; i < Repeats + 1; i++)
        {
            double a = Time(() => nn.functional.linear(x, w).Dispose());
            double b = Time(() =>
            {
                using (Autocast.Enter(Precision.BFloat16, CPU)) nn.functional.linear(x, w).Dispose();
            });
            if (i == 0) continue;   // the first round warms the kernels and the allocator
            fp32.Add(a);
            bf16.Add(b);
        }
        return (Median(fp32), Median(bf16));
    }

    static double Time(Action action)
    {
        var watch = Stopwatch.StartNew();
        action();
        return watch.Elapsed.TotalMilliseconds;
    }

    static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    static string DefaultCacheFile => Path.Combine(
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } cache ? cache : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "peftsharp", "precision-probe.json");

    /// <summary>The CPU model, its flags and its core count, hashed: a machine of another kind measures again.</summary>
    static string MachineKey()
    {
        string info = "";
        try { info = string.Join("\n", File.ReadLines("/proc/cpuinfo").Where(l => l.StartsWith("model name", StringComparison.Ordinal) || l.StartsWith("flags", StringComparison.Ordinal)).Distinct()); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{info}\n{Environment.ProcessorCount}")))[..16];
    }

    static (double, double)? ReadCache(string file, string key)
    {
        try
        {
            if (!File.Exists(file) || JsonNode.Parse(File.ReadAllText(file)) is not JsonObject o || o[key] is not JsonObject entry) return null;
            return entry["fp32_ms"] is JsonValue f && f.TryGetValue(out double fp32) && entry["bf16_ms"] is JsonValue b && b.TryGetValue(out double bf16)
                ? (fp32, bf16) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            return null;   // an unreadable cache is measured again, not an error
        }
    }

    static void WriteCache(string file, string key, double fp32Ms, double bf16Ms)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            var o = File.Exists(file) && JsonNode.Parse(File.ReadAllText(file)) is JsonObject existing ? existing : new JsonObject();
            o[key] = new JsonObject { ["fp32_ms"] = fp32Ms, ["bf16_ms"] = bf16Ms, ["measured_utc"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture) };
            string tmp = file + $".{Environment.ProcessId}.tmp";
            File.WriteAllText(tmp, o.ToJsonString());
            File.Move(tmp, file, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            // No cache (a read-only home): the next run measures again.
        }
    }
}
