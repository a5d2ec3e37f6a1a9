namespace PeftSharp.Checkpoints;

/// <summary>How runs and adapter files name the pretrained weights they started from: the file's name and its content
/// hash, so a renamed copy is the same base and a changed file is not.</summary>
public static class CheckpointIdentity
{
    /// <summary>The identity of "no checkpoint": a randomly initialised backbone.</summary>
    public const string RandomInit = "random-init";

    /// <summary>"file-name sha256:hex" of a checkpoint file, or <see cref="RandomInit"/> for none.</summary>
    public static string Of(string? checkpointPath) =>
        checkpointPath is null ? RandomInit : $"{Path.GetFileName(checkpointPath)} sha256:{FileHashes.Sha256(checkpointPath)}";
}
