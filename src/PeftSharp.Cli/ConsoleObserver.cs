using System.Globalization;
using PeftSharp.Results;
using PeftSharp.Training;
using Spectre.Console;

namespace PeftSharp.Cli;

/// <summary>
/// Shows runs as they go: Spectre.Console progress bars (ETA, images/s, running loss) on an interactive terminal,
/// plain timestamped lines otherwise or with --quiet (for logs and CI).
/// </summary>
public sealed class ConsoleObserver : IRunObserver
{
    readonly ProgressContext? context;
    ProgressTask? current;
    string currentLabel = "";
    int lastEpochLogged;

    ConsoleObserver(ProgressContext? context) => this.context = context;

    /// <summary>Runs <paramref name="work"/> with an observer suited to the terminal.</summary>
    public static T Run<T>(bool quiet, Func<ConsoleObserver, T> work)
    {
        if (quiet || !AnsiConsole.Profile.Capabilities.Interactive) return work(new ConsoleObserver(null));
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                     new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx => result = work(new ConsoleObserver(ctx)));
        return result;
    }

    public void RunStarting(RunSpec spec, string label)
    {
        lastEpochLogged = 0;
        currentLabel = label;
        if (context != null) current = context.AddTask(Markup.Escape(label), maxValue: 1);
        else Log($"{label}: training {spec.Method} lr={spec.Lr.ToString("0.0e+00", CultureInfo.InvariantCulture)} wd={spec.WeightDecay.ToString("0.0e+00", CultureInfo.InvariantCulture)} seed={spec.Seed} on {spec.TrainSplit}, {spec.Epochs} epochs");
    }

    public void RunSkipped(RunRecord finished, string label)
    {
        string text = $"{label}: already finished (top-1 {Percent(finished.Top1)}), skipped";
        if (context != null) context.AddTask(Markup.Escape(text), maxValue: 1).Increment(1);
        else Log(text);
    }

    public void Training(TrainProgress p)
    {
        if (current != null)
        {
            current.MaxValue = (double)p.Epochs * p.StepsPerEpoch;
            current.Value = (double)(p.Epoch - 1) * p.StepsPerEpoch + p.Step;
            current.Description = Markup.Escape($"{currentLabel} epoch {p.Epoch}/{p.Epochs} loss {p.Loss:F3} {p.ImagesPerSecond:F0} img/s");
        }
        else if (p.Step == p.StepsPerEpoch && (p.Epoch == p.Epochs || p.Epoch - lastEpochLogged >= Math.Max(1, p.Epochs / 10)))
        {
            lastEpochLogged = p.Epoch;
            Log($"  epoch {p.Epoch}/{p.Epochs} loss {p.Loss:F4} lr {p.Lr.ToString("0.00e+00", CultureInfo.InvariantCulture)} {p.ImagesPerSecond:F0} img/s");
        }
    }

    public void RunFinished(RunRecord record, string label)
    {
        string text = $"{label}: top-1 {Percent(record.Top1)} on {record.Spec.EvalSplit} ({record.Outcome!.TrainSeconds:F1} s training)";
        if (current != null)
        {
            current.Value = current.MaxValue;
            current.Description = Markup.Escape(text);
            current.StopTask();
        }
        else Log(text);
    }

    public void RunFailed(RunSpec spec, string label, string error)
    {
        string text = $"{label}: FAILED: {error}";
        if (current != null)
        {
            current.Description = Markup.Escape(text);
            current.StopTask();
        }
        else Log(text);
    }

    public void RunWaiting(RunSpec spec, string label, string? owner)
    {
        string text = $"{label}: being trained by another process ({owner ?? "unknown"}), waiting for its result";
        if (context != null) context.AddTask(Markup.Escape(text), maxValue: 1);
        else Log(text);
    }

    static string Percent(double? fraction) => fraction is double f ? (100 * f).ToString("F2", CultureInfo.InvariantCulture) + "%" : "n/a";

    static void Log(string text) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {text}");
}
