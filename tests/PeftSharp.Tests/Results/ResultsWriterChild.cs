using System.Diagnostics;
using System.Runtime.CompilerServices;
using PeftSharp.Results;

namespace PeftSharp.Tests.Results;

/// <summary>
/// A writer process for the kill test. The test assembly is runnable (`dotnet PeftSharp.Tests.dll`, empty Main from
/// the test SDK); when started with <see cref="Variable"/> set to a database path, this module initializer takes over
/// before Main and writes runs in an endless loop until the test kills the process. In the test host the variable is
/// unset and the initializer does nothing.
/// </summary>
internal static class ResultsWriterChild
{
    public const string Variable = "PEFTSHARP_TEST_RESULTS_WRITER", ParentVariable = "PEFTSHARP_TEST_RESULTS_PARENT";
    public const int Examples = 1000, Classes = 50;

#pragma warning disable CA2255 // a module initializer in a library is exactly the point here
    [ModuleInitializer]
    internal static void RunIfRequested()
    {
        string? path = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(path)) return;
        // Never outlive the test: an orphaned writer would fill the disk.
        var parent = Process.GetProcessById(int.Parse(Environment.GetEnvironmentVariable(ParentVariable)!));
        var clock = Stopwatch.StartNew();
        using (var db = ResultsDb.Open(path))
        {
            for (int run = 0; !parent.HasExited && clock.Elapsed < TimeSpan.FromSeconds(60); run++)
            {
                long id = db.BeginRun(ResultsTestData.Spec(run, dataset: "killed"), ResultsTestData.Context);
                Console.Out.WriteLine($"begun {run}");
                Console.Out.Flush();
                db.FinishRun(id, ResultsTestData.Outcome(), ResultsTestData.Predictions(run, Examples, Classes));
                Console.Out.WriteLine($"finished {run}");
                Console.Out.Flush();
            }
        }
        Environment.Exit(0);   // do not fall through to the (empty) Main of the test SDK
    }
#pragma warning restore CA2255

    /// <summary>Starts a writer process on <paramref name="dbPath"/> with its stdout redirected.</summary>
    public static Process Start(string dbPath)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "PeftSharp.Tests.dll"));
        psi.Environment[Variable] = dbPath;
        psi.Environment[ParentVariable] = Environment.ProcessId.ToString();
        return Process.Start(psi)!;
    }
}
