namespace PeftSharp.Cli.Commands;

/// <summary>One CLI verb.</summary>
public interface ICommand
{
    string Name { get; }
    string Summary { get; }
    string Usage { get; }
    /// <summary>Option names that take no value.</summary>
    IEnumerable<string> Flags => new[] { "help" };
    int Run(CommandLine line);
}
