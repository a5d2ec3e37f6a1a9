using PeftSharp.Tests.Data;

namespace PeftSharp.Tests.Training;

/// <summary>
/// A small task in the VTAB-1K layout, made for tests: 32×32 PNGs whose class is the quadrant holding a bright blob
/// (plus a class-dependent tint), with noise, so a few epochs of training separate the classes.
/// </summary>
public static class TinyVtab
{
    public static string Create(string? directory = null, int classes = 4, int train = 48, int val = 16, int test = 32, int seed = 5)
    {
        string dir = directory ?? Path.Combine(TestFiles.TempDir("tiny-vtab"), "tiny");
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var rng = new Random(seed);
        List<string> Split(string name, int count)
        {
            var lines = new List<string>();
            for (int i = 0; i < count; i++)
            {
                int label = i % classes;
                string file = $"images/{name}_{i:D4}.png";
                int cx = (label % 2) * 16 + 8 + rng.Next(-3, 4), cy = (label / 2 % 2) * 16 + 8 + rng.Next(-3, 4);
                int tint = 40 * label;
                var noise = Enumerable.Range(0, 32 * 32).Select(_ => rng.Next(0, 60)).ToArray();
                TestImages.WritePng(Path.Combine(dir, file), 32, 32, (x, y) =>
                {
                    int n = noise[y * 32 + x];
                    bool blob = (x - cx) * (x - cx) + (y - cy) * (y - cy) < 30;
                    return blob ? ((byte)Math.Min(255, 200 + n), (byte)Math.Min(255, 150 + tint / 2), (byte)(n + tint / 4))
                                : ((byte)n, (byte)(n / 2 + tint / 3), (byte)n);
                });
                lines.Add($"{file} {label}");
            }
            return lines;
        }
        var trainLines = Split("train", train);
        var valLines = Split("val", val);
        File.WriteAllLines(Path.Combine(dir, "train800.txt"), trainLines);
        File.WriteAllLines(Path.Combine(dir, "val200.txt"), valLines);
        File.WriteAllLines(Path.Combine(dir, "train800val200.txt"), trainLines.Concat(valLines));
        File.WriteAllLines(Path.Combine(dir, "test.txt"), Split("test", test));
        return dir;
    }

    /// <summary>A tiny timm-format backbone checkpoint (the parity fixture: D=64, 2 blocks, 32 px, patch 8).</summary>
    public static string Backbone => TestFiles.VitCheckpoint;
}
