using System.Diagnostics;
using PeftSharp.Sweeps;
using PeftSharp.Tests.Cli;
using PeftSharp.Tests.Training;

namespace PeftSharp.Tests.Sweeps;

/// <summary>The sbatch script (scripts/slurm-smoke.sh submits one to a real single-node Slurm).</summary>
public sealed class SlurmScriptTests
{
    static SlurmJob Job(string? db) => new()
    {
        Db = db, Plan = "grid-1", Workers = 8, Command = "dotnet '/opt/peftsharp/PeftSharp.Cli.dll'", LogDirectory = "/shared/logs",
        Partition = "gpu", Time = "04:00:00", Gres = "gpu:1", CpusPerTask = 4, LeaseSeconds = 90,
    };

    [Fact]
    public void The_script_is_a_job_array_whose_tasks_run_workers()
    {
        string script = SlurmScript.Render(Job("postgres://alice@db.example/study"));
        Assert.StartsWith("#!/bin/bash\n", script);
        foreach (var directive in new[] { "--array=0-7", "--partition=gpu", "--time=04:00:00", "--gres=gpu:1", "--cpus-per-task=4",
                                          "--output=/shared/logs/peftsharp-worker-%A_%a.out" })
            Assert.Contains($"#SBATCH {directive}\n", script);
        Assert.DoesNotContain("--mem", script);
        Assert.EndsWith("exec dotnet '/opt/peftsharp/PeftSharp.Cli.dll' worker --db 'postgres://alice@db.example/study' --sweep 'grid-1' --lease-seconds 90 --quiet\n", script);
        AssertValidBash(script);
    }

    [Fact]
    public void A_database_with_a_password_is_read_from_the_environment_not_written_into_the_script()
    {
        string script = SlurmScript.Render(Job(null));
        Assert.Contains("--db \"$PEFTSHARP_DB\"", script);
        Assert.Contains(": \"${PEFTSHARP_DB:?", script);
        AssertValidBash(script);
    }

    [Fact]
    public void Bad_job_settings_are_user_errors()
    {
        Assert.Contains("workers must be at least 1", Assert.Throws<PeftSharpException>(() => SlurmScript.Render(Job(null) with { Workers = 0 })).Message);
        Assert.Contains("one line", Assert.Throws<PeftSharpException>(() => SlurmScript.Render(Job(null) with { Time = "1:00\nrm -rf /" })).Message);
        Assert.Equal("'it'\\''s'", SlurmScript.Quote("it's"));
    }

    [Fact]
    public void Sweep_slurm_writes_the_script_for_a_planned_sweep_and_an_unknown_plan_is_one_line()
    {
        string dir = TestFiles.TempDir();
        string db = Path.Combine(dir, "results.db");
        var plan = CliRunner.RunIn(dir, "sweep", "plan", "--db", db, "--name", "p1", "--data", SweepTestKit.Task, "--method", "bitfit",
                                   "--grid", "none", "--lrs", "1e-2", "--checkpoint", TinyVtab.Backbone, "--epochs", "1");
        Assert.True(plan.ExitCode == 0, plan.Stderr);
        var r = CliRunner.RunIn(dir, "sweep", "slurm", "--db", db, "--workers", "3", "--sweep", "p1", "--out", "job.sbatch");
        Assert.True(r.ExitCode == 0, r.Stderr);
        string script = File.ReadAllText(Path.Combine(dir, "job.sbatch"));
        Assert.Contains("#SBATCH --array=0-2\n", script);
        Assert.Contains($"worker --db '{db}' --sweep 'p1'", script);
        Assert.Contains("PeftSharp.Cli.dll", script);

        var missing = CliRunner.RunIn(dir, "sweep", "slurm", "--db", db, "--workers", "3", "--sweep", "nope");
        CliRunner.AssertOneLineError(missing, "no sweep of plan 'nope'");
        CliRunner.AssertOneLineError(CliRunner.RunIn(dir, "worker", "--db", db, "--sweep", "nope"), "no sweep of plan 'nope'");
        CliRunner.AssertOneLineError(CliRunner.RunIn(dir, "sweep", "status", "--db", db, "--sweep", "nope"), "no sweep of plan 'nope'");
    }

    static void AssertValidBash(string script)
    {
        var psi = new ProcessStartInfo("bash", "-n") { RedirectStandardInput = true, RedirectStandardError = true, UseShellExecute = false };
        using var bash = Process.Start(psi)!;
        bash.StandardInput.Write(script);
        bash.StandardInput.Close();
        string errors = bash.StandardError.ReadToEnd();
        bash.WaitForExit();
        Assert.True(bash.ExitCode == 0, errors);
    }
}
