namespace PeftSharp;

/// <summary>
/// An error caused by the user's input (a file, a configuration, a hyperparameter), with a one-line message that
/// names what was wrong and what was expected. The CLI prints the message alone; anything else is a bug.
/// </summary>
public class PeftSharpException : Exception
{
    public PeftSharpException(string message) : base(message) { }
    public PeftSharpException(string message, Exception inner) : base(message, inner) { }

    /// <summary>An error about one named setting of the library's API (e.g. "seeds", "checkpoint"); a front end maps
    /// the name to its own option and says both.</summary>
    public PeftSharpException(string field, string message) : base(message) => Field = field;

    /// <summary>The setting the error is about, where there is one.</summary>
    public string? Field { get; }
}
