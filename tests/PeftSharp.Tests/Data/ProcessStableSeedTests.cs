namespace PeftSharp.Tests.Data;

/// <summary>.NET randomises HashCode and string hashes per process, so a generator seeded from them draws differently
/// in every process: a dense run's batch order (and NOAH's search order) did, and the same run gave a different
/// result each time it was trained. Seeds come from <c>SuiteRng.Mix</c> or the loaders' own derivation instead.</summary>
public class ProcessStableSeedTests
{
    [Fact]
    public void No_generator_in_the_sources_is_seeded_from_a_per_process_hash()
    {
        string src = Path.Combine(RepositoryRoot(), "src");
        var offenders = Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .SelectMany(f => File.ReadLines(f).Select((line, i) => (f, i, line)))
            .Where(x => x.line.Contains("Random(HashCode", StringComparison.Ordinal)
                        || (x.line.Contains("new Random(", StringComparison.Ordinal) && x.line.Contains("GetHashCode()", StringComparison.Ordinal)))
            .Select(x => $"{Path.GetRelativePath(src, x.f)}:{x.i + 1}: {x.line.Trim()}")
            .ToList();
        Assert.True(offenders.Count == 0, string.Join("\n", offenders));
        Assert.True(Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories).Count() > 100, "the scan found the sources");
    }

    static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "README.md")) && Directory.Exists(Path.Combine(d.FullName, "src", "PeftSharp")))
                return d.FullName;
        throw new DirectoryNotFoundException("the repository above the test assembly");
    }
}
