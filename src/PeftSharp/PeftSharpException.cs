namespace PeftSharp;

/// <summary>
/// An error caused by the user's input (a file, a configuration, a hyperparameter), with a one-line message that
/// names what was wrong and what was expected. The CLI prints the message alone; anything else is a bug.
/// </summary>
public class PeftSharpException : Exception
{
    public PeftSharpException(string message) : base(message) { }
    public PeftSharpException(string message, Exception inner) : base(message, inner) { }
}
