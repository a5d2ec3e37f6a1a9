using PeftSharp.Suite;

namespace PeftSharp.Cli.Commands;

/// <summary>The mini-VTAB suite: write its task folders, or rebuild its shipped data from the Debian packages.</summary>
public sealed class SuiteCommand : ICommand
{
    public string Name => "suite";
    public string Summary => "mini-VTAB suite: 'materialize' task folders, 'build' shipped data from Debian packages, 'list'";
    public string Usage => """
        peftsharp suite list
        peftsharp suite materialize [--out DIR] [--tasks a,b,...] [--seed 42] [--shifts a,b,...|all]
        peftsharp suite shifts
        peftsharp suite build [--data-dir data/suite]
          'build' re-extracts the shipped natural/specialized subsets from the installed Debian packages
          (dataset-fashion-mnist, opencv-doc); 'materialize' writes VTAB-1K folders (no packages needed), and
          with --shifts a shifted copy TASK@SHIFT of each natural task among them ('shifts' lists the shifts).
        """;

    public int Run(CommandLine line)
    {
        string action = line.Positional.Count > 0 ? line.Positional[0] : throw new PeftSharpException("suite: expected list, shifts, materialize or build");
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
                var shifts = line.Get("shifts") is string names
                    ? (names == "all" ? Shifts.All.Select(s => s.Name).ToArray() : names.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    : System.Array.Empty<string>();
                foreach (var shift in shifts) Shifts.Get(shift);   // an unknown shift fails before any writing
                line.RejectUnknown(1);
                foreach (var t in MiniVtab.Materialize(output, seed, tasks))
                {
                    Console.WriteLine($"{t.Directory} ({t.Group.ToString().ToLowerInvariant()}{(t.Reused ? ", already complete" : "")})");
                    if (t.Group != TaskGroup.Natural) continue;
                    foreach (var shift in shifts)
                    {
                        var m = Shifts.Materialize(t.Directory, shift, output);
                        Console.WriteLine($"{m.Directory}{(m.Reused ? " (already complete)" : "")}");
                    }
                }
                return 0;
            }
            case "shifts":
                line.RejectUnknown(1);
                foreach (var s in Shifts.All) Console.WriteLine($"{s.Name,-18} {s.Description}");
                return 0;
            case "build":
            {
                string dataDir = line.Get("data-dir") ?? "data/suite";
                line.RejectUnknown(1);
                MiniVtab.BuildFromPackages(dataDir);
                Console.WriteLine($"rebuilt the shipped suite data in {dataDir} from the Debian packages");
                return 0;
            }
            default:
                throw new PeftSharpException($"suite: unknown action '{action}' (list, shifts, materialize, build)");
        }
    }
}
