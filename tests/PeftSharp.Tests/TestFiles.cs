namespace PeftSharp.Tests;

/// <summary>Paths of the test data (copied next to the test assembly) and scratch folders.</summary>
public static class TestFiles
{
    public static string Data(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", name);

    public static string VitCheckpoint => Data("vit_tiny_timm.safetensors");
    public static string VitIo => Data("vit_tiny_timm_io.safetensors");
    public static string ClipCheckpoint => Data("clip_tiny.safetensors");
    public static string ClipIo => Data("clip_tiny_io.safetensors");

    /// <summary>A fresh empty folder under this test process's scratch root in the system temp folder. The root goes
    /// when the process exits, and the roots of test processes no longer alive go when the next one starts (the test
    /// host is not always let exit: a run of the suite used to leave about 300 folders behind, some of 27 MB).
    /// PEFTSHARP_KEEP_TEST_DIRS=1 keeps them.</summary>
    public static string TempDir(string prefix = "peftsharp-test")
    {
        string dir = Path.Combine(ScratchRoot.Value, $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    const string RootPrefix = "peftsharp-tests-pid";

    static readonly Lazy<string> ScratchRoot = new(() =>
    {
        bool keep = Environment.GetEnvironmentVariable("PEFTSHARP_KEEP_TEST_DIRS") == "1";
        string root = Path.Combine(Path.GetTempPath(), $"{RootPrefix}{Environment.ProcessId}");
        if (!keep)
        {
            foreach (string stale in Directory.EnumerateDirectories(Path.GetTempPath(), RootPrefix + "*"))
                if (int.TryParse(Path.GetFileName(stale)[RootPrefix.Length..], out int pid) && pid != Environment.ProcessId && !Alive(pid))
                    TryDelete(stale);
            AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(root);
        }
        Directory.CreateDirectory(root);
        return root;
    });

    static bool Alive(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* in use or not ours: leave it */ }
    }
}
