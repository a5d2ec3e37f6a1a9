using PeftSharp.Data;
using PeftSharp.Results;

namespace PeftSharp.Tests.Packaging;

/// <summary>The library package is what an application references: it must not pull in the study runner's results
/// store, database drivers or suite (those live in PeftSharp.Studies, which the tool uses).</summary>
public class LibraryBoundaryTests
{
    [Fact]
    public void The_library_references_no_database_driver_and_not_the_study_runner()
    {
        var references = typeof(ImageTask).Assembly.GetReferencedAssemblies().Select(a => a.Name).ToList();
        Assert.Contains("TorchSharp", references);
        foreach (string studySide in new[] { "PeftSharp.Studies", "Npgsql", "Microsoft.Data.Sqlite", "PeftSharp.Cli" })
            Assert.DoesNotContain(studySide, references);
    }

    [Fact]
    public void The_results_store_and_the_suite_live_in_the_study_runner()
    {
        Assert.Equal("PeftSharp.Studies", typeof(RunSpec).Assembly.GetName().Name);
        Assert.Equal("PeftSharp.Studies", typeof(PeftSharp.Suite.MiniVtab).Assembly.GetName().Name);
        Assert.Equal("PeftSharp", typeof(PeftSharp.Training.FineTuning).Assembly.GetName().Name);
    }
}
