namespace PeftSharp.Data;

/// <summary>
/// An entry that a reader or loader left out in skip-bad mode, with the same one-line text the error would have had.
/// </summary>
/// <param name="File">The file that holds the bad entry (a list file, an image, an IDX file or a folder).</param>
/// <param name="Line">1-based line in <paramref name="File"/>, when the entry comes from a list file.</param>
/// <param name="Reason">What was wrong and what was expected.</param>
public sealed record SkippedEntry(string File, int? Line, string Reason)
{
    public string Message => DataErrors.Format(File, Line, Reason);
    public override string ToString() => Message;
}

/// <summary>Builds the single-line "file line N: what" messages shared by exceptions and skip reports.</summary>
internal static class DataErrors
{
    public static string Format(string file, int? line, string reason)
    {
        string where = line is int n ? $"{file} line {n}" : file;
        // Messages must stay on one line even when a path or a line of input carries a line break.
        return $"{where}: {reason}".ReplaceLineEndings(" ");
    }

    public static PeftSharpException Error(string file, int? line, string reason) => new(Format(file, line, reason));

    /// <summary>Throws, or records the entry when <paramref name="skipBad"/> is set.</summary>
    public static void Report(bool skipBad, List<SkippedEntry> skipped, string file, int? line, string reason)
    {
        if (!skipBad) throw Error(file, line, reason);
        skipped.Add(new SkippedEntry(file, line, reason));
    }
}
