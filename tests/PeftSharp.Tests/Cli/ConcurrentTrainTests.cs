using System.Diagnostics;
using System.Text.Json;
using PeftSharp.Tests.Training;
using Xunit.Abstractions;

namespace PeftSharp.Tests.Cli;

/// <summary>Two real peftsharp processes on one SQLite file: the run is trained once, both report its result.</summary>
public sealed class ConcurrentTrainTests(ITestOutputHelper output)
{
    static readonly Lazy<string> Task = new(() => TinyVtab.Create());

    static string[] TrainArgs(string db, int epochs) =>
    [
        "train", "--data", Task.Value, "--method", "lora", "--checkpoint", TinyVtab.Backbone, "--epochs", $"{epochs}",
        "--warmup", "0", "--batch-size", "16", "--db", db, "--quiet",
    ];

    sealed record Finished(int ExitCode, string Stdout, string Stderr);

    static Finished Wait(Process p)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) p.Kill(entireProcessTree: true);
        return new Finished(p.ExitCode, stdout.Result, stderr.Result);
    }

    static string ResultLine(Finished f) => f.Stdout.Split('\n').Single(l => l.StartsWith("run ", StringComparison.Ordinal));

    JsonElement[] Runs(string db)
    {
        var r = CliRunner.Run("results", "--db", db, "--format", "json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        return JsonDocument.Parse(r.Stdout).RootElement.EnumerateArray().ToArray();
    }

    [Fact]
    public void Two_train_processes_started_together_train_once_and_print_the_same_result()
    {
        string db = Path.Combine(TestFiles.TempDir("two-trains"), "results.db");
        var clock = Stopwatch.StartNew();
        using var a = CliRunner.Start(null, TrainArgs(db, epochs: 6));
        using var b = CliRunner.Start(null, TrainArgs(db, epochs: 6));
        var (ra, rb) = (Wait(a), Wait(b));
        output.WriteLine($"both done in {clock.Elapsed.TotalSeconds:F1} s\n--- a:\n{ra.Stdout}{ra.Stderr}\n--- b:\n{rb.Stdout}{rb.Stderr}");
        Assert.True(ra.ExitCode == 0, $"a exited {ra.ExitCode}: {ra.Stderr}");
        Assert.True(rb.ExitCode == 0, $"b exited {rb.ExitCode}: {rb.Stderr}");
        Assert.Equal(ResultLine(ra), ResultLine(rb));
        var run = Assert.Single(Runs(db));
        Assert.Equal("finished", run.GetProperty("status").GetString());
        // One trained it; the other waited for it or found it finished.
        Assert.Equal(1, new[] { ra, rb }.Count(r => r.Stdout.Contains(": training lora", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_process_started_while_another_trains_the_run_waits_for_it_and_reads_its_result()
    {
        string db = Path.Combine(TestFiles.TempDir("train-waits"), "results.db");
        var clock = Stopwatch.StartNew();
        using var a = CliRunner.Start(null, TrainArgs(db, epochs: 40));
        var first = a.StandardOutput.ReadLine();   // the owner's "training" line: its lease is taken
        Assert.Contains(": training lora", first);
        output.WriteLine($"a training after {clock.Elapsed.TotalSeconds:F1} s");
        using var b = CliRunner.Start(null, TrainArgs(db, epochs: 40));
        var rb = Wait(b);
        var ra = Wait(a);
        output.WriteLine($"both done in {clock.Elapsed.TotalSeconds:F1} s\n--- a:\n{first}\n{ra.Stdout}{ra.Stderr}\n--- b:\n{rb.Stdout}{rb.Stderr}");
        Assert.True(ra.ExitCode == 0, $"a exited {ra.ExitCode}: {ra.Stderr}");
        Assert.True(rb.ExitCode == 0, $"b exited {rb.ExitCode}: {rb.Stderr}");
        Assert.Contains("being trained by another process", rb.Stdout);
        Assert.DoesNotContain(": training lora", rb.Stdout);
        Assert.Equal(ResultLine(ra), ResultLine(rb));
        var run = Assert.Single(Runs(db));
        Assert.Equal("finished", run.GetProperty("status").GetString());

        // The run kept its adapter: export it through the CLI.
        long id = run.GetProperty("id").GetInt64();
        string adapter = Path.Combine(Path.GetDirectoryName(db)!, "exported");
        var export = CliRunner.Run("results", "export", $"{id}", "--adapter", adapter, "--db", db);
        Assert.True(export.ExitCode == 0, export.Stderr);
        Assert.Matches(@$"^run {id}: adapter \(lora, [0-9.]+ KiB, sha256 [0-9a-f]{{12}}\) written to ", export.Stdout);
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_model.safetensors")));
    }

    [Fact]
    public void Two_tune_processes_on_one_file_both_finish_with_the_same_result_and_each_run_trained_once()
    {
        string db = Path.Combine(TestFiles.TempDir("two-tunes"), "results.db");
        string[] args =
        [
            "tune", "--data", Task.Value, "--method", "lora", "--checkpoint", TinyVtab.Backbone, "--grid", "none",
            "--lrs", "1e-3,1e-2", "--wds", "1e-4", "--epochs", "8", "--warmup", "0", "--batch-size", "16", "--db", db, "--quiet",
        ];
        using var a = CliRunner.Start(null, args);
        using var b = CliRunner.Start(null, args);
        var (ra, rb) = (Wait(a), Wait(b));
        output.WriteLine($"--- a:\n{ra.Stdout}{ra.Stderr}\n--- b:\n{rb.Stdout}{rb.Stderr}");
        Assert.True(ra.ExitCode == 0, $"a exited {ra.ExitCode}: {ra.Stderr}");
        Assert.True(rb.ExitCode == 0, $"b exited {rb.ExitCode}: {rb.Stderr}");
        static string Test(Finished f) => f.Stdout.Split('\n').Single(l => l.StartsWith("test top-1 (seed", StringComparison.Ordinal));
        Assert.Equal(Test(ra), Test(rb));
        var runs = Runs(db);
        Assert.Equal(3, runs.Length);   // two search runs and the final one, each once
        Assert.All(runs, r => Assert.Equal("finished", r.GetProperty("status").GetString()));
        int trainings = new[] { ra, rb }.Sum(r => r.Stdout.Split('\n').Count(l => l.Contains(": training lora", StringComparison.Ordinal)));
        Assert.Equal(3, trainings);
    }
}
