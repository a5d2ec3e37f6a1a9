using PeftSharp.Suite;

namespace PeftSharp.Cli.Commands;

/// <summary>The mini-VTAB suite: write its task folders, or rebuild its shipped data from the Debian packages.</summary>
public sealed class SuiteCommand : ICommand
{
    public string Name => "suite";
    public string Summary => "mini-VTAB suite: 'materialize' task folders, 'build' shipped data from Debian packages, 'list'";
    public string Usage => """
        peftsharp suite list
        peftsharp suite materialize [--out DIR] [--tasks a,b,...] [--seed 42]
        peftsharp suite build [--data-dir data/suite]
          'build' re-extracts the shipped natural/specialized subsets from the installed Debian packages
          (dataset-fashion-mnist, opencv-doc); 'materialize' writes VTAB-1K folders (no packages needed).
        """;

    public int Run(CommandLine line)
    {
        string action = line.Positional.Count > 0 ? line.Positional[0] : throw new PeftSharpException("suite: expected list, materialize or build");
        switch (action)
        {
            case "list":
                line.RejectUnknown(1);
                foreach (var t in MiniVtab.Tasks)
                    Console.WriteLine($"{t.Name,-20} {t.GroupName,-12} {t.NumClasses,3} classes  {t.Provenance}");
                return 0;
            case "materialize":
            {
                string output = line.Get("out") ?? "peftsharp-report/suite";
                var tasks = line.Get("tasks")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                int seed = line.Int("seed", MiniVtab.DefaultSeed);
                line.RejectUnknown(1);
                foreach (var t in MiniVtab.Materialize(output, seed, tasks))
                    Console.WriteLine($"{t.Directory} ({t.Group.ToString().ToLowerInvariant()}{(t.Reused ? ", already complete" : "")})");
                return 0;
            }
            case "build":
            {
                string dataDir = line.Get("data-dir") ?? "data/suite";
                line.RejectUnknown(1);
                MiniVtab.BuildFromPackages(dataDir);
                Console.WriteLine($"rebuilt the shipped suite data in {dataDir} from the Debian packages");
                return 0;
            }
            default:
                throw new PeftSharpException($"suite: unknown action '{action}' (list, materialize, build)");
        }
    }
}
