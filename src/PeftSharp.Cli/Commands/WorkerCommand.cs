using PeftSharp.Sweeps;

namespace PeftSharp.Cli.Commands;

/// <summary>A sweep worker: claims the queue's pending runs one at a time and trains them (see peftsharp sweep).</summary>
public sealed class WorkerCommand : ICommand
{
    public string Name => "worker";
    public string Summary => "claim and train a sweep's queued runs, one at a time, until none is left";
    public IEnumerable<string> Flags => new[] { "help", "quiet" };
    public string Usage => """
        peftsharp worker --db FILE|URL [--sweep PLAN] [--max-runs N] [--lease-seconds 60] [--poll-seconds 2]
                         [--device cpu|cuda] [--quiet]
          Claims one pending run at a time (of PLAN, or of any plan), heartbeats while it trains and records the
          result. Stops when no run is pending or running (or after N runs). A run whose worker stops heartbeating
          for --lease-seconds goes back to pending and another worker trains it. Start as many workers as you
          like, on any hosts that reach the database and see the task folders at the same paths.
          --db defaults to $PEFTSHARP_DB.
        """;

    public int Run(CommandLine line)
    {
        string? plan = line.Get("sweep");
        int? maxRuns = line.Get("max-runs") is null ? null : line.Int("max-runs", 0);
        double lease = line.Double("lease-seconds", 60), poll = line.Double("poll-seconds", 2);
        var device = Devices.Parse(line.Get("device"));
        bool quiet = line.Flag("quiet");
        if (maxRuns is < 1) throw new PeftSharpException($"worker: --max-runs must be at least 1 (got {maxRuns})");
        if (lease < 3) throw new PeftSharpException($"worker: --lease-seconds must be at least 3 (got {lease})");
        if (poll <= 0) throw new PeftSharpException($"worker: --poll-seconds must be positive (got {poll})");
        using var db = SharedOptions.OpenDb(line);
        line.RejectUnknown();

        var queue = new WorkQueue(db);
        if (plan is not null && queue.Progress(plan).Count == 0) throw SweepCommand.NoSuchPlan(plan, db);
        var options = new WorkerOptions { Plan = plan, MaxRuns = maxRuns, Lease = TimeSpan.FromSeconds(lease), Poll = TimeSpan.FromSeconds(poll) };
        void Log(string text) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] worker {options.WorkerId}: {text}");
        Log($"on {db.Location}{(plan is null ? "" : $", plan {plan}")}");
        var summary = ConsoleObserver.Run(quiet, observer => new SweepWorker(queue, device, options, observer, Log).Run());
        Log($"done: {summary.Claimed} claimed, {summary.Finished} finished, {summary.Failed} failed, {summary.Retried} given back after a native error, {summary.LeasesLost} leases lost");
        return summary.Failed == 0 ? 0 : 1;
    }
}
