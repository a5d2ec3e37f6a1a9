namespace PeftSharp;

/// <summary>The process's resident memory from /proc (Linux), for the peak-memory columns of the benchmarks and
/// trainers; every figure is 0 where /proc is unavailable.</summary>
public static class ProcessMemory
{
    /// <summary>Peak resident set size (VmHWM) of this process, in bytes; 0 where /proc is unavailable.</summary>
    public static long PeakRss() => ProcStatus("VmHWM:");

    /// <summary>Current resident set size (VmRSS) of this process, in bytes; 0 where /proc is unavailable.</summary>
    public static long CurrentRss() => ProcStatus("VmRSS:");

    static long ProcStatus(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(field, StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { }
        return 0;
    }

    /// <summary>Resets VmHWM to the current RSS (Linux ≥ 4.0: "5" to clear_refs), so each method's peak is its own.</summary>
    public static void ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
