using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace PeftSharp;

/// <summary>
/// SHA-256 of files, which identifies checkpoints in run keys, adapter files and merged models. A file's hash is
/// remembered for the process while its size and modification time stay the same, so a sweep that names one
/// checkpoint in every run (and saves an adapter after each) reads it once, not once per run.
/// </summary>
public static class FileHashes
{
    static readonly ConcurrentDictionary<(string Path, long Length, DateTime Modified), string> Known = new();

    /// <summary>Lowercase hex SHA-256 of <paramref name="path"/>; a missing file is an error naming it.</summary>
    public static string Sha256(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new PeftSharpException($"{path}: checkpoint file not found");
        return Known.GetOrAdd((info.FullName, info.Length, info.LastWriteTimeUtc), key =>
        {
            using var stream = File.OpenRead(key.Path);
            return Convert.ToHexStringLower(SHA256.HashData(stream));
        });
    }
}
