using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using PeftSharp.Tests.UserPath;

namespace PeftSharp.Tests.Docs;

/// <summary>The README's C# quick start compiles and runs as printed (its file names rebased into a scratch folder).</summary>
public class ReadmeQuickStartTests
{

    [Fact]
    public void The_readme_csharp_quick_start_compiles_and_runs()
    {
        string readme = File.ReadAllText(FindReadme());
        int section = readme.IndexOf("## C# quick start", StringComparison.Ordinal);
        Assert.True(section >= 0, "README has no C# quick start section");
        int start = readme.IndexOf("```csharp\n", section, StringComparison.Ordinal) + "```csharp\n".Length;
        string code = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.InRange(code.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length, 3, 10);
        // The same lines are the example application built against the package, and the package's own README.
        string root = Path.GetDirectoryName(FindReadme())!;
        Assert.Equal(code, File.ReadAllText(Path.Combine(root, "examples", "QuickStart", "Program.cs")));
        Assert.Contains("```csharp\n" + code + "```", File.ReadAllText(Path.Combine(root, "src", "PeftSharp", "PACKAGE.md")));

        string dir = TestFiles.TempDir("quick-start");
        try
        {
            ClassFolders.Create(Path.Combine(dir, "my-photos"));
            ClassFolders.Write(Path.Combine(dir, "photo.png"), 2, new Random(11));
            foreach (var name in new[] { "my-photos", "my-adapter", "photo.png" })
                code = code.Replace($"\"{name}\"", $"\"{Path.Combine(dir, name)}\"", StringComparison.Ordinal);
            Run(Compile(code));
            Assert.True(File.Exists(Path.Combine(dir, "my-adapter", "adapter_config.json")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    static string FindReadme()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "README.md")) && Directory.Exists(Path.Combine(d.FullName, "src", "PeftSharp")))
                return Path.Combine(d.FullName, "README.md");
        throw new FileNotFoundException("README.md above the test assembly");
    }

    /// <summary>Top-level statements compiled against this process's assemblies, as a user's console program.</summary>
    static Assembly Compile(string code)
    {
        string implicitUsings = "global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq;\n";
        var references = AppDomain.CurrentDomain.GetAssemblies().Where(a => !a.IsDynamic && a.Location.Length > 0).Select(a => a.Location)
            .Concat(((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator))
            .Append(typeof(PeftSharp.Data.ImageTask).Assembly.Location).Distinct()
            .Select(path => MetadataReference.CreateFromFile(path));
        var compilation = CSharpCompilation.Create("QuickStart",
            [CSharpSyntaxTree.ParseText(implicitUsings), CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest))],
            references, new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image);
        var errors = emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(emitted.Success, "the quick start does not compile:\n" + string.Join("\n", errors));
        // It needs the library package alone: nothing of the study runner (results store, suite, benchmarks).
        var used = compilation.GetUsedAssemblyReferences().Select(r => Path.GetFileNameWithoutExtension(r.Display)).ToList();
        Assert.Contains("PeftSharp", used);
        Assert.DoesNotContain("PeftSharp.Studies", used);
        return Assembly.Load(image.ToArray());
    }

    static void Run(Assembly program)
    {
        var entry = program.EntryPoint!;
        entry.Invoke(null, entry.GetParameters().Length == 0 ? null : [Array.Empty<string>()]);
    }
}
