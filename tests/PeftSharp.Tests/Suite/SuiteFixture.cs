using PeftSharp.Suite;

namespace PeftSharp.Tests.Suite;

/// <summary>The whole mini-VTAB suite, materialised once (with the default seed) for all the suite tests.</summary>
public sealed class SuiteFixture : IDisposable
{
    public SuiteFixture()
    {
        Root = TestFiles.TempDir("peftsharp-suite");
        Tasks = MiniVtab.Materialize(Root);
    }

    public string Root { get; }
    public IReadOnlyList<MaterializedTask> Tasks { get; }

    public MaterializedTask Task(string name) => Tasks.Single(t => t.Name == name);

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class SuiteCollection : ICollectionFixture<SuiteFixture>
{
    public const string Name = "Suite";
}

/// <summary>Where the repository's shipped data lives, found by walking up from the test assembly.</summary>
public static class SuiteFiles
{
    public static string ShippedDataDir
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "data", "suite");
                if (File.Exists(Path.Combine(candidate, "README.md"))) return candidate;
            }
            throw new DirectoryNotFoundException($"no data/suite/README.md above {AppContext.BaseDirectory}");
        }
    }
}
