namespace PeftSharp;

/// <summary>Output folders checked before the work that fills them, so a bad path fails in one line before training.</summary>
public static class WritableFolder
{
    /// <summary>Creates <paramref name="directory"/> and proves a file can be written there.</summary>
    /// <param name="what">What the folder is for, for the message ("the benchmark's output folder").</param>
    public static void Require(string directory, string what)
    {
        try
        {
            Directory.CreateDirectory(directory);
            string probe = Path.Combine(directory, $".peftsharp-write-test-{Environment.ProcessId}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PeftSharpException($"{directory}: cannot write {what} ({e.Message.Split('\n')[0]})");
        }
    }
}
