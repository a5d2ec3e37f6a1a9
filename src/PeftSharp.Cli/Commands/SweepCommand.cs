using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using PeftSharp.Results;
using PeftSharp.Sweeps;

namespace PeftSharp.Cli.Commands;

/// <summary>Sweeps on a shared database: plan them into the work queue, watch them, and start workers on Slurm.</summary>
public sealed class SweepCommand : ICommand
{
    public string Name => "sweep";
    public string Summary => "queue a sweep's runs for workers (plan), show its progress (status), write a Slurm job (slurm)";
    public IEnumerable<string> Flags => SharedOptions.Flags.Append("runs").Append("flip");
    public string Usage => """
        peftsharp sweep plan --db FILE|URL --data TASK_DIR[,TASK_DIR...] --method ID[,ID...] [--name PLAN]
                             [backbone] [grid and training options as for tune]
          Queues every run tune would run for each task × method: the lr × wd × method-grid search on
          train800/val200 (or, for a one-point grid, the final runs directly). When a sweep's search runs are all
          done, the next worker queues the retraining of the best configuration on train800val200 (test).
          Prints the plan's name (default: derived from its sweeps); planning it again queues nothing new.
          A dense TASK_DIR (segmentation or COCO folder, docs/dense.md) queues dense runs: search on train/val, the
          best retrained on train+val and scored on test; [--image-size N (64)] [--head uper|linear] [--head-lr X]
          [--test-images N].
        peftsharp sweep status --db FILE|URL [--sweep PLAN] [--runs]
          Pending, running, finished and failed runs per sweep (--runs lists every queued run).
        peftsharp sweep slurm --db FILE|URL --workers N [--sweep PLAN] [--partition P] [--time T] [--gres G]
                              [--cpus-per-task N] [--mem M] [--out peftsharp-sweep.sbatch] [--log-dir DIR]
                              [--lease-seconds 60] [--peftsharp COMMAND]
          Writes an sbatch job-array script of N tasks, each running 'peftsharp worker'. A password in --db is
          not written into it: the job then reads the database from $PEFTSHARP_DB (export it before sbatch).
          --peftsharp is how compute nodes run peftsharp (default: this program, as it was started here).
          --db defaults to $PEFTSHARP_DB.
        """ + "\n" + SharedOptions.GridUsage + SharedOptions.Usage + VideoCli.SweepUsage;

    public int Run(CommandLine line)
    {
        if (line.Positional.Count == 0) throw new PeftSharpException("sweep: expected plan, status or slurm (see 'peftsharp help sweep')");
        return line.Positional[0] switch
        {
            "plan" => Plan(line),
            "status" => Status(line),
            "slurm" => Slurm(line),
            var other => throw new PeftSharpException($"sweep: unknown action '{other}', expected plan, status or slurm"),
        };
    }

    static int Plan(CommandLine line)
    {
        // Dense folders are recognised by their layout, so --family dense needs nothing more.
        if (line.Get("family") is string family && family is not ("classification" or "dense"))
            return family == "video" ? VideoCli.SweepPlan(line) : throw new PeftSharpException("family", $"sweep plan: unknown family '{family}' (classification, video, dense)");
        var tasks = List(line, "data");
        var methods = List(line, "method");
        var requests = (from task in tasks from method in methods select SharedOptions.Tune(line, task, method)).ToList();
        // A dense folder (segmentation or COCO) makes dense runs with these settings (docs/dense.md); the options are
        // read only then, so a classification plan refuses them as unknown.
        static bool IsDense(string dir) => Directory.Exists(dir) && (Dense.SegmentationFolder.Looks(dir) || Dense.CocoDataset.Looks(dir));
        if (requests.Any(r => IsDense(r.TaskDirectory)))
        {
            var dense = new Training.DenseSweep(line.Int("image-size", DenseCli.DefaultImageSize), line.Get("head") ?? "uper", line.OptionalDouble("head-lr"),
                                                line.Get("test-images") is null ? null : line.Int("test-images", 0));
            requests = requests.Select(r => IsDense(r.TaskDirectory) ? r with { Dense = dense, SplitRule = null } : r).ToList();
        }
        string? name = line.Get("name");
        line.Flag("quiet");
        line.Get("device");   // accepted for symmetry with tune; workers choose their own device
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown(maxPositional: 1);

        var queue = new WorkQueue(db);
        PrintPlan(queue.Plan(name, requests), "sweep(s)", db);
        return 0;
    }

    /// <summary>What a plan queued, its sweeps and how to start workers on it (any family's plan).</summary>
    internal static void PrintPlan(PlanResult result, string sweeps, IResultsStore db)
    {
        Console.WriteLine($"plan {result.Plan}: {result.SweepIds.Count} {sweeps}, {result.Queued} run(s) queued" +
                          (result.AlreadyQueued > 0 ? $", {result.AlreadyQueued} already queued" : "") + $" in {db.Location}");
        foreach (var sweep in result.SweepIds) Console.WriteLine($"  {sweep}");
        Console.WriteLine($"start workers: peftsharp worker --db DB --sweep {result.Plan}");
    }

    static int Status(CommandLine line)
    {
        string? plan = line.Get("sweep");
        bool runs = line.Flag("runs");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown(maxPositional: 1);

        var queue = new WorkQueue(db);
        queue.Refresh();   // reclaims dead workers' runs and runs any selection step that is due
        var sweeps = queue.Progress(plan);
        if (sweeps.Count == 0)
        {
            if (plan is not null) throw NoSuchPlan(plan, db);
            Console.WriteLine($"no sweeps queued in {db.Location}");
            return 0;
        }
        Console.WriteLine($"{"sweep",-48} {"stage",-6} {"pending",7} {"running",7} {"finished",8} {"failed",6}");
        foreach (var sweep in sweeps)
            foreach (var stage in new[] { RunStage.Search, RunStage.Final }.Where(s => sweep.Count(s) > 0))
                Console.WriteLine($"{sweep.SweepId,-48} {stage.ToString().ToLowerInvariant(),-6} {Count(sweep, stage, QueueStatus.Pending),7} " +
                                  $"{Count(sweep, stage, QueueStatus.Running),7} {Count(sweep, stage, QueueStatus.Finished),8} {Count(sweep, stage, QueueStatus.Failed),6}");
        int Total(QueueStatus s) => sweeps.Sum(p => p.Count(s));
        Console.WriteLine($"total: {Total(QueueStatus.Pending)} pending, {Total(QueueStatus.Running)} running, {Total(QueueStatus.Finished)} finished, " +
                          $"{Total(QueueStatus.Failed)} failed; {sweeps.Count(s => s.Done)} of {sweeps.Count} sweep(s) done");
        if (runs)
            foreach (var row in queue.Rows(plan))
                Console.WriteLine($"  {row.Item.Id,5} {row.Item.Stage.ToString().ToLowerInvariant(),-6} point {row.Item.Point,3} seed {row.Item.Seed,4} " +
                                  $"{row.Status.ToString().ToLowerInvariant(),-8} attempts {row.Item.Attempts} {row.Worker ?? ""} {row.Error ?? ""}".TrimEnd());
        return 0;
    }

    static int Count(SweepProgress sweep, RunStage stage, QueueStatus status) => sweep.Counts.GetValueOrDefault((stage, status));

    static int Slurm(CommandLine line)
    {
        string dbArgument = SharedOptions.Db(line);
        var job = new SlurmJob
        {
            Db = HasPassword(dbArgument) ? null : dbArgument, Plan = line.Get("sweep"),
            Workers = line.Int("workers", 0), Partition = line.Get("partition"), Time = line.Get("time"), Gres = line.Get("gres"),
            CpusPerTask = line.Get("cpus-per-task") is null ? null : line.Int("cpus-per-task", 1), Memory = line.Get("mem"),
            LogDirectory = Path.GetFullPath(line.Get("log-dir") ?? "slurm-logs"), LeaseSeconds = line.Int("lease-seconds", 60),
            Command = line.Get("peftsharp") ?? ThisProgram(),
        }.Validate();
        string output = line.Get("out") ?? "peftsharp-sweep.sbatch";
        using (var db = SharedOptions.OpenDb(line))
        {
            line.RejectUnknown(maxPositional: 1);
            if (job.Plan is not null && new WorkQueue(db).Progress(job.Plan).Count == 0) throw NoSuchPlan(job.Plan, db);
        }
        Directory.CreateDirectory(job.LogDirectory);
        File.WriteAllText(output, SlurmScript.Render(job));
        Console.WriteLine($"wrote {output}: a job array of {job.Workers} worker(s); logs in {job.LogDirectory}");
        Console.WriteLine(job.Db is null
            ? $"submit: export {SlurmJob.DbVariable}=<your --db, with its password>; sbatch {output}"
            : $"submit: sbatch {output}");
        return 0;
    }

    internal static PeftSharpException NoSuchPlan(string plan, IResultsStore db) =>
        new($"no sweep of plan '{plan}' in {db.Location} (run 'peftsharp sweep plan' first)");

    /// <summary>A URL's user:password@ or a connection string's Password=.</summary>
    static bool HasPassword(string dbArgument) =>
        ResultsStores.IsPostgres(dbArgument) && ResultsStores.Describe(dbArgument) != dbArgument;

    /// <summary>This program as a command line: the apphost, or `dotnet PeftSharp.Cli.dll`.</summary>
    static string ThisProgram()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string dll = typeof(SweepCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? $"{SlurmScript.Quote(process)} {SlurmScript.Quote(dll)}"
            : SlurmScript.Quote(process);
    }

    static IReadOnlyList<string> List(CommandLine line, string option)
    {
        var items = line.GetAll(option).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
        return items.Count > 0 ? items : throw new PeftSharpException($"sweep plan: missing required option --{option}");
    }
}
