using System.Text.Json.Nodes;

namespace PeftSharp.Tests.Cli;

public class PerfAndBenchCommandTests
{
    [Fact]
    public void Perf_json_reports_every_method_with_the_documented_fields()
    {
        var r = CliRunner.Run("perf", "--config", """{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}""",
                              "--methods", "full,lora,vpt-shallow,linear", "--batch", "4", "--steps", "1", "--warmup", "0", "--json", "--profile");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!.AsObject();
        Assert.True(json["sgemm_gflops"]!.GetValue<double>() > 0);
        Assert.True(json["bare_infer_images_per_s"]!.GetValue<double>() > 0);
        var methods = json["methods"]!.AsArray().ToDictionary(m => m!["method"]!.GetValue<string>(), m => m!.AsObject());
        Assert.Equal(new[] { "full", "linear", "lora", "vpt-shallow" }, methods.Keys.OrderBy(k => k));
        foreach (var m in methods.Values)
        {
            Assert.True(m["train_images_per_s"]!.GetValue<double>() > 0);
            Assert.True(m["infer_images_per_s"]!.GetValue<double>() > 0);
            // The memory training takes is the peak less what was resident before training: never above the peak.
            long peak = m["peak_rss_bytes"]!.GetValue<long>(), training = m["training_peak_bytes"]!.GetValue<long>();
            Assert.True(peak > 0 && training <= peak, $"{m["method"]}: training {training} of peak {peak}");
            Assert.True(m.ContainsKey("infer_merged_images_per_s"));
            var profile = m["profile"]!.AsObject();
            // The five phases of a step and their total, which is their sum (each rounded to the microsecond).
            var phases = new[] { "zero_grad_ms", "forward_ms", "backward_ms", "optimizer_ms", "dispose_ms" };
            Assert.Equal(phases.Append("total_ms"), profile.Select(kv => kv.Key));
            Assert.Equal(phases.Sum(p => profile[p]!.GetValue<double>()), profile["total_ms"]!.GetValue<double>(), 0.004);
            Assert.True(profile["forward_ms"]!.GetValue<double>() > 0 && profile["backward_ms"]!.GetValue<double>() > 0);
        }

        // Ratios against full fine-tuning are this method's figure over full's (full's own is 1), as rounded in the JSON.
        double Full(string field) => methods["full"][field]!.GetValue<double>();
        foreach (var m in methods.Values)
        {
            Assert.Null(m["paired_vs_full"]);   // not asked for: the ratio is of the two rates
            Assert.Equal(m["train_images_per_s"]!.GetValue<double>() / Full("train_images_per_s"), m["train_vs_full"]!.GetValue<double>(), 0.002);
            if (Full("training_peak_bytes") > 0)
                Assert.Equal(Math.Round(m["training_peak_bytes"]!.GetValue<long>() / Full("training_peak_bytes"), 3), m["training_memory_vs_full"]!.GetValue<double>());
        }
        Assert.Equal(1, methods["full"]["train_vs_full"]!.GetValue<double>());

        // Optimizer state is four float32 copies (weight, gradient, two AdamW moments) of what trains: beyond the probe's
        // head, 16 bytes per trainable parameter. Only the probe skips blocks: its first trainable block is past the last.
        long State(string method) => methods[method]["training_state_bytes"]!.GetValue<long>();
        long Trainable(string method) => methods[method]["trainable_params"]!.GetValue<long>();
        foreach (var method in new[] { "full", "lora", "vpt-shallow" })
        {
            Assert.Equal(16 * Trainable(method), State(method) - State("linear"));
            Assert.Equal(0, methods[method]["first_trainable_block"]!.GetValue<int>());
        }
        Assert.Equal(2, methods["linear"]["first_trainable_block"]!.GetValue<int>());
        Assert.Null(methods["vpt-shallow"]["infer_merged_images_per_s"]);
        Assert.Null(methods["vpt-shallow"]["merged_vs_bare"]);
        Assert.True(methods["vpt-shallow"]["unmerged_vs_bare"]!.GetValue<double>() > 0);
        Assert.True(methods["lora"]["infer_merged_images_per_s"]!.GetValue<double>() > 0);
        Assert.True(methods["lora"]["merged_vs_bare"]!.GetValue<double>() > 0);
        Assert.Equal(2 * 8 * (32 + 96), methods["lora"]["trainable_params"]!.GetValue<long>());
        Assert.Equal(0, methods["linear"]["trainable_params"]!.GetValue<long>());
        // What the forward leaves allocated for the backward: every block's activations for full fine-tuning; for a
        // probe the head's input and the frozen blocks' outputs the step still holds (about a fifth of it here).
        long Saved(string method) => methods[method]["saved_activation_bytes"]!.GetValue<long>();
        Assert.True(Saved("full") > 3 * Saved("linear") && Saved("linear") > 0, $"full {Saved("full")}, linear {Saved("linear")}");
    }

    [Fact]
    public void Perf_set_applies_to_the_methods_that_have_the_hyperparameter_and_rejects_one_that_none_has()
    {
        const string config = """{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}""";
        var r = CliRunner.Run("perf", "--config", config, "--methods", "full,lora", "--set", "rank=2", "--batch", "4",
                              "--steps", "1", "--warmup", "0", "--json", "--no-baseline");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var methods = JsonNode.Parse(r.Stdout)!["methods"]!.AsArray().ToDictionary(m => m!["method"]!.GetValue<string>(), m => m!);
        Assert.Equal(2 * 2 * (32 + 96), methods["lora"]["trainable_params"]!.GetValue<long>());   // rank 2, not the default 8

        var bad = CliRunner.Run("perf", "--config", config, "--methods", "full", "--set", "rank=2");
        CliRunner.AssertOneLineError(bad, "--set rank is a hyperparameter of none of the measured methods (full)");
        Assert.Equal(2, bad.ExitCode);
    }

    [Fact]
    public void Perf_gemm_measures_only_the_two_gemm_rates_at_the_given_size_and_rejects_a_size_below_one()
    {
        var r = CliRunner.Run("perf", "--gemm", "64", "--threads", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!.AsObject();
        Assert.Equal(new[] { "gemm_n", "threads", "fp32_gflops", "bf16_gflops" }, json.Select(kv => kv.Key));   // no methods measured
        Assert.Equal(64, json["gemm_n"]!.GetValue<int>());
        Assert.Equal(1, json["threads"]!.GetValue<int>());
        Assert.True(json["fp32_gflops"]!.GetValue<double>() > 0 && json["bf16_gflops"]!.GetValue<double>() > 0);

        CliRunner.AssertOneLineError(CliRunner.Run("perf", "--gemm", "0"), "perf: --gemm and --threads must be >= 1");
    }

    [Fact]
    public void Perf_table_marks_what_was_not_measured_instead_of_printing_NaN()
    {
        var r = CliRunner.Run("perf", "--config", """{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}""",
                              "--methods", "lora", "--batch", "4", "--steps", "1", "--warmup", "0", "--no-baseline");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var row = r.Stdout.Split('\n').Single(l => l.StartsWith("lora ")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("-", row[2]);   // method, train img/s, vs full
        Assert.Contains("bare backbone inference not measured (--no-baseline); sgemm not measured (--no-baseline)", r.Stdout);
        Assert.DoesNotContain("NaN", r.Stdout);
    }

    [Fact]
    public void Perf_grad_checkpointing_trains_checkpointed_and_says_so()
    {
        var r = CliRunner.Run("perf", "--config", """{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}""",
                              "--methods", "full,lora", "--batch", "4", "--steps", "1", "--warmup", "0", "--json", "--no-baseline",
                              "--grad-checkpointing");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!.AsObject();
        Assert.True(json["grad_checkpointing"]!.GetValue<bool>());
        Assert.All(json["methods"]!.AsArray(), m => Assert.True(m!["train_images_per_s"]!.GetValue<double>() > 0));
    }

    [Fact]
    public void Bench_runs_a_tiny_profile_end_to_end_and_writes_the_report()
    {
        string dir = TestFiles.TempDir();
        string readme = Path.Combine(dir, "README.md");
        File.WriteAllText(readme, "# x\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n");
        var r = CliRunner.Run("bench", "--quick", "--out", Path.Combine(dir, "report"), "--checkpoint", TestFiles.VitCheckpoint,
                              "--tasks", "dsprites-loc", "--methods", "linear,bitfit", "--epochs", "1", "--quiet", "--update-readme", readme);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.True(File.Exists(Path.Combine(dir, "report", "report.html")));
        Assert.True(File.Exists(Path.Combine(dir, "report", "results.db")));
        string summary = File.ReadAllText(Path.Combine(dir, "report", "summary.md"));
        Assert.Contains("| bitfit |", summary);
        Assert.Contains("| dsprites-loc |", summary);
        Assert.Contains("| bitfit |", File.ReadAllText(readme));
        // Rerunning finds every run finished and retrains nothing.
        var again = CliRunner.Run("bench", "--quick", "--out", Path.Combine(dir, "report"), "--checkpoint", TestFiles.VitCheckpoint,
                                  "--tasks", "dsprites-loc", "--methods", "linear,bitfit", "--epochs", "1", "--quiet");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.DoesNotContain(": training ", again.Stdout);
        Assert.Contains("already finished", again.Stdout);
    }

    [Fact]
    public void Bench_with_a_missing_backbone_is_one_clear_line()
    {
        var r = CliRunner.Run("bench", "--quick", "--out", TestFiles.TempDir(), "--checkpoint", "/nonexistent/backbone.safetensors");
        CliRunner.AssertOneLineError(r, "/nonexistent/backbone.safetensors");
    }

    [Fact]
    public void Bench_runs_from_any_folder_on_the_backbone_shipped_next_to_the_tool()
    {
        string elsewhere = TestFiles.TempDir("elsewhere");
        var r = CliRunner.RunIn(elsewhere, "bench", "--quick", "--tasks", "digits", "--methods", "linear", "--epochs", "1", "--quiet");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        string summary = File.ReadAllText(Path.Combine(elsewhere, "peftsharp-report", "summary.md"));
        Assert.Contains("peftsharp-vit-tiny6-p8-32.safetensors", summary);
        Assert.Contains("search on the first 160 of train800", summary);
        Assert.True(File.Exists(Path.Combine(elsewhere, "peftsharp-report", "report.html")));
    }

    [Theory]
    [InlineData("--profile", "huge", "unknown bench profile 'huge'")]
    [InlineData("--seeds", "0", "seeds must be at least 1, got 0 (option --seeds)")]
    [InlineData("--tasks", "imagenet", "imagenet")]
    public void Bench_rejects_bad_options_with_one_line(string option, string value, string expected)
    {
        var r = CliRunner.Run("bench", option, value, "--out", TestFiles.TempDir());
        CliRunner.AssertOneLineError(r, expected);
        Assert.Equal(2, r.ExitCode);
    }

    [Fact]
    public void Bench_with_an_unwritable_output_folder_or_a_corrupted_backbone_is_one_clear_line()
    {
        string dir = TestFiles.TempDir();
        string file = Path.Combine(dir, "a-file");
        File.WriteAllText(file, "not a folder");
        var unwritable = CliRunner.Run("bench", "--quick", "--out", Path.Combine(file, "report"));
        CliRunner.AssertOneLineError(unwritable, "cannot write the benchmark's output folder");
        Assert.Equal(2, unwritable.ExitCode);

        string corrupted = Path.Combine(dir, "corrupted.safetensors");
        File.WriteAllBytes(corrupted, Enumerable.Range(0, 4096).Select(i => (byte)(i * 37)).ToArray());
        var bad = CliRunner.Run("bench", "--quick", "--out", Path.Combine(dir, "report"), "--checkpoint", corrupted);
        CliRunner.AssertOneLineError(bad, corrupted);
        Assert.Equal(2, bad.ExitCode);
        Assert.False(Directory.Exists(Path.Combine(dir, "report", "suite")), "nothing was materialised for a bad backbone");
    }

    [Fact]
    public void Suite_list_names_every_task_with_its_group()
    {
        var r = CliRunner.Run("suite", "list");
        Assert.True(r.ExitCode == 0, r.Stderr);
        foreach (var task in new[] { "fashion-mnist", "digits", "clevr-count", "dsprites-ori", "snorb-azim" }) Assert.Contains(task, r.Stdout);
        Assert.Contains("structured", r.Stdout);
    }
}
