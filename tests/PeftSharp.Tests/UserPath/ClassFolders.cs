using PeftSharp.Tests.Data;

namespace PeftSharp.Tests.UserPath;

/// <summary>A user's image folder: one sub-folder of PNGs per named class, learnable in a few epochs (each class a
/// blob in its own quadrant and tint over noise), as a newcomer would point `train --data` at.</summary>
public static class ClassFolders
{
    public static readonly string[] Names = ["circle", "leaf", "moon", "star"];

    public static string Create(string? directory = null, int perClass = 30, int seed = 3, int size = 32)
    {
        string dir = directory ?? Path.Combine(TestFiles.TempDir("class-folders"), "my-photos");
        var rng = new Random(seed);
        for (int label = 0; label < Names.Length; label++)
        {
            Directory.CreateDirectory(Path.Combine(dir, Names[label]));
            for (int i = 0; i < perClass; i++) Write(Path.Combine(dir, Names[label], $"img_{i:D3}.png"), label, rng, size);
        }
        return dir;
    }

    /// <summary>One image of class <paramref name="label"/>.</summary>
    public static void Write(string path, int label, Random rng, int size = 32)
    {
        int half = size / 2;
        int cx = (label % 2) * half + half / 2 + rng.Next(-3, 4), cy = (label / 2 % 2) * half + half / 2 + rng.Next(-3, 4);
        int tint = 50 * label;
        var noise = Enumerable.Range(0, size * size).Select(_ => rng.Next(0, 60)).ToArray();
        TestImages.WritePng(path, size, size, (x, y) =>
        {
            int n = noise[y * size + x];
            bool blob = (x - cx) * (x - cx) + (y - cy) * (y - cy) < size;
            return blob ? ((byte)Math.Min(255, 200 + n), (byte)Math.Min(255, 120 + tint / 2), (byte)(n + tint / 4))
                        : ((byte)n, (byte)(n / 2 + tint / 3), (byte)n);
        });
    }
}
