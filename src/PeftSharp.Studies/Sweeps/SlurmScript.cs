using System.Globalization;
using System.Text;

namespace PeftSharp.Sweeps;

/// <summary>A Slurm job array of sweep workers: one array task per worker, each running <c>peftsharp worker</c>.</summary>
public sealed record SlurmJob
{
    /// <summary>The environment variable a job reads the database from when its --db carries a password.</summary>
    public const string DbVariable = "PEFTSHARP_DB";

    /// <summary>The --db the workers use, or null to read it from <see cref="DbVariable"/> at run time (so a
    /// password is never written into the script).</summary>
    public string? Db { get; init; }
    public string? Plan { get; init; }
    public required int Workers { get; init; }
    /// <summary>The command that runs peftsharp on a compute node (e.g. "dotnet /shared/peftsharp/PeftSharp.Cli.dll").</summary>
    public required string Command { get; init; }
    public string? Partition { get; init; }
    public string? Time { get; init; }
    public string? Gres { get; init; }
    public int? CpusPerTask { get; init; }
    public string? Memory { get; init; }
    /// <summary>Where each task writes its log (peftsharp-worker-JOB_TASK.out).</summary>
    public required string LogDirectory { get; init; }
    public int LeaseSeconds { get; init; } = 60;
    public string JobName { get; init; } = "peftsharp-sweep";

    public SlurmJob Validate()
    {
        if (Workers < 1) throw new PeftSharpException("workers", $"Slurm script: workers must be at least 1 (got {Workers})");
        if (LeaseSeconds < 3) throw new PeftSharpException("lease_seconds", $"Slurm script: lease seconds must be at least 3 (got {LeaseSeconds})");
        return this;
    }
}

public static class SlurmScript
{
    /// <summary>The sbatch script of <paramref name="job"/>; each task is one worker that runs until the plan has no open runs.</summary>
    public static string Render(SlurmJob job)
    {
        job.Validate();
        var s = new StringBuilder();
        s.Append("#!/bin/bash\n");
        Directive(s, "job-name", job.JobName);
        Directive(s, "array", $"0-{job.Workers - 1}");
        Directive(s, "output", Path.Combine(job.LogDirectory, "peftsharp-worker-%A_%a.out"));
        Directive(s, "partition", job.Partition);
        Directive(s, "time", job.Time);
        Directive(s, "gres", job.Gres);
        Directive(s, "cpus-per-task", job.CpusPerTask?.ToString(CultureInfo.InvariantCulture));
        Directive(s, "mem", job.Memory);
        s.Append("# Each array task is one PeftSharp sweep worker: it claims pending runs one at a time until none is left.\n");
        s.Append("# A task that dies leaves its run to be reclaimed by another worker once its lease runs out.\n");
        s.Append("set -euo pipefail\n");
        string db;
        if (job.Db is null)
        {
            s.Append($"# The database URL holds a password, so it is not written here: export {SlurmJob.DbVariable} before sbatch.\n");
            s.Append($": \"${{{SlurmJob.DbVariable}:?export {SlurmJob.DbVariable}=the database URL before sbatch}}\"\n");
            db = $"\"${SlurmJob.DbVariable}\"";
        }
        else db = Quote(job.Db);
        s.Append($"exec {job.Command} worker --db {db}");
        if (job.Plan != null) s.Append($" --sweep {Quote(job.Plan)}");
        s.Append($" --lease-seconds {job.LeaseSeconds.ToString(CultureInfo.InvariantCulture)} --quiet\n");
        return s.ToString();
    }

    static void Directive(StringBuilder s, string name, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return;
        if (value.Contains('\n')) throw new PeftSharpException($"sweep slurm: --{name} must be one line");
        s.Append($"#SBATCH --{name}={value}\n");
    }

    /// <summary>Single-quoted for the shell.</summary>
    public static string Quote(string text) => "'" + text.Replace("'", "'\\''") + "'";
}
