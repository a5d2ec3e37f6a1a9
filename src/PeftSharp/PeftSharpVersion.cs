using System.Reflection;

namespace PeftSharp;

/// <summary>The library's version (Directory.Build.props; the tool and the packages share it).</summary>
public static class PeftSharpVersion
{
    /// <summary>"0.2.0", without the build metadata (the commit) the SDK appends to the informational version.</summary>
    public static string Text { get; } =
        (typeof(PeftSharpVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown").Split('+')[0];
}
