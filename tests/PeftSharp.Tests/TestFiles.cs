namespace PeftSharp.Tests;

/// <summary>Paths of the test data (copied next to the test assembly) and scratch folders.</summary>
public static class TestFiles
{
    public static string Data(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", name);

    public static string VitCheckpoint => Data("vit_tiny_timm.safetensors");
    public static string VitIo => Data("vit_tiny_timm_io.safetensors");
    public static string ClipCheckpoint => Data("clip_tiny.safetensors");
    public static string ClipIo => Data("clip_tiny_io.safetensors");

    /// <summary>A fresh empty folder under the system temp folder.</summary>
    public static string TempDir(string prefix = "peftsharp-test")
    {
        string dir = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
