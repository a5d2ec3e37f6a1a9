using PeftSharp.Interop;
using PeftSharp;
using PeftSharp.Cli;
using PeftSharp.Cli.Commands;

// peftsharp <verb> [options]: each verb is a class in Commands/. User errors print one line and exit 2;
// anything else is a bug and prints one line too (the trace only with PEFTSHARP_DEBUG=1), exit 1.
var verbs = new ICommand[]
{
    new ForwardCommand(), new InspectCommand(), new MethodsCommand(),
    new TrainCommand(), new EvalCommand(), new PredictCommand(), new MergeCommand(), new ExportCommand(), new TuneCommand(), new ResultsCommand(), new PerfCommand(), new PretrainCommand(), new PretrainClipCommand(), new ClipCommand(), new BenchCommand(), new SuiteCommand(),
    new SweepCommand(), new WorkerCommand(), new StudyCommand(), new ClipsCommand(), new ConvertCommand(),
};

if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
{
    var topic = args.Length > 1 ? verbs.FirstOrDefault(v => v.Name == args[1]) : null;
    Console.WriteLine(topic != null ? topic.Usage : Usage());
    return 0;
}

if (args is ["--version"] or ["version"])
{
    // The library's version (the tool and the packages share it), and the TorchSharp it runs on.
    Console.WriteLine($"peftsharp {PeftSharpVersion.Text} (TorchSharp {typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString(3)})");
    return 0;
}

var command = verbs.FirstOrDefault(v => v.Name == args[0]);
if (command == null)
{
    Console.Error.WriteLine($"peftsharp: unknown verb '{args[0]}' (verbs: {string.Join(", ", verbs.Select(v => v.Name))})");
    return 2;
}

NativeHeap.KeepFreedBuffers();
OpenMpWait.PassiveUnlessSet();   // before libtorch loads: its threads sleep, not spin, on a shared machine
try
{
    var line = new CommandLine(command.Name, args.Skip(1), command.Flags);
    if (line.Flag("help"))
    {
        Console.WriteLine(command.Usage);
        return 0;
    }
    return command.Run(line);
}
catch (PeftSharpException e)
{
    // Messages from the command line parser already start with the verb.
    string message = e.Message.StartsWith(command.Name + ": ", StringComparison.Ordinal) ? e.Message[(command.Name.Length + 2)..] : e.Message;
    // A library error about a named setting also names the option that sets it.
    string option = e.Field is string field ? $" (option --{field.Replace('_', '-')})" : "";
    Console.Error.WriteLine($"peftsharp {command.Name}: {message}{option}");
    return 2;
}
catch (Exception e) when (Environment.GetEnvironmentVariable("PEFTSHARP_DEBUG") != "1")
{
    Console.Error.WriteLine($"peftsharp {command.Name}: internal error: {e.GetType().Name}: {e.Message.Split('\n')[0]} (set PEFTSHARP_DEBUG=1 for the trace)");
    return 1;
}

string Usage() =>
    "peftsharp — parameter-efficient fine-tuning of vision transformers\n\nverbs:\n" +
    string.Join("\n", verbs.Select(v => $"  {v.Name,-10} {v.Summary}")) +
    "\n\n'peftsharp help VERB' shows a verb's options; 'peftsharp --version' the version.";
