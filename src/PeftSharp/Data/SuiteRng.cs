using System.Text;

namespace PeftSharp.Data;

/// <summary>
/// A small seeded generator (xoshiro256** seeded through SplitMix64). The suite uses its own generator rather than
/// System.Random so that every image's parameters are fixed by (seed, task, split, index) alone, independent of the
/// .NET version and of the order in which parallel workers run.
/// </summary>
internal sealed class SuiteRng
{
    ulong _s0, _s1, _s2, _s3;

    public SuiteRng(ulong seed)
    {
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    /// <summary>A generator for one item of a stream: the parts are hashed into one seed.</summary>
    public static SuiteRng For(params ulong[] parts) => new(Mix(parts));

    /// <summary>Combines seed parts into one well-mixed 64-bit seed.</summary>
    public static ulong Mix(params ulong[] parts)
    {
        ulong state = 0x9E3779B97F4A7C15UL;
        foreach (ulong part in parts)
        {
            state ^= part;
            state = SplitMix(ref state);
        }
        return state;
    }

    /// <summary>A System.Random seed from (seed, epoch, stream) that is the same in every process: HashCode.Combine,
    /// the obvious alternative, is randomised per process (it made dense runs, NOAH's search and the video loader draw
    /// differently in every process).</summary>
    public static int GeneratorSeed(int seed, int epoch, int stream) =>
        (int)(Mix((ulong)(uint)seed, (ulong)(uint)epoch, (ulong)(uint)stream) & int.MaxValue);

    /// <summary>A stable 64-bit hash of a name (FNV-1a over UTF-8), so task seeds do not depend on task order.</summary>
    public static ulong Hash(string name)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
            hash = (hash ^ b) * 0x100000001B3UL;
        return hash;
    }

    public ulong NextU64()
    {
        ulong result = RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [0, n).</summary>
    public int Next(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), "n must be positive");
        return (int)(((NextU64() >> 32) * (ulong)n) >> 32);
    }

    /// <summary>Uniform in [lo, hi).</summary>
    public double Range(double lo, double hi) => lo + (hi - lo) * NextDouble();

    public bool Chance(double p) => NextDouble() < p;

    /// <summary>Standard normal (Box–Muller).</summary>
    public double Gaussian()
    {
        double u = 1.0 - NextDouble(), v = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u)) * Math.Cos(2.0 * Math.PI * v);
    }

    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}
