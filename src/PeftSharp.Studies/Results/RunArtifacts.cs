using System.IO.Compression;

namespace PeftSharp.Results;

/// <summary>
/// A run's trained weights as an artefact of the results store: the adapter folder (adapter_config.json,
/// adapter_model.safetensors) packed into one zip. The zip is deterministic (entries sorted by name, one fixed
/// timestamp, no extra fields), so equal files give equal bytes and the store keeps them once.
/// </summary>
public static class RunArtifacts
{
    /// <summary>The artefact kind of a run's adapter (for full fine-tuning: all its weights).</summary>
    public const string Adapter = "adapter";

    static readonly DateTimeOffset FixedTime = new(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);   // the zip format's epoch

    /// <summary>The files directly in <paramref name="directory"/> (not its subfolders), as a zip.</summary>
    public static byte[] PackFolder(string directory)
    {
        if (!Directory.Exists(directory)) throw new PeftSharpException($"{directory}: folder not found, expected an adapter folder");
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (string file in Directory.GetFiles(directory).OrderBy(Path.GetFileName, StringComparer.Ordinal))
            {
                var entry = zip.CreateEntry(Path.GetFileName(file), CompressionLevel.Optimal);
                entry.LastWriteTime = FixedTime;
                using var input = File.OpenRead(file);
                using var output = entry.Open();
                input.CopyTo(output);
            }
        }
        return buffer.ToArray();
    }

    /// <summary>Writes the zip's files into <paramref name="directory"/> (created if missing; same-named files are
    /// replaced). An entry naming a path outside the folder is refused.</summary>
    public static void UnpackFolder(byte[] zip, string directory)
    {
        Directory.CreateDirectory(directory);
        string root = Path.GetFullPath(directory);
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        foreach (var entry in archive.Entries)
        {
            string target = Path.GetFullPath(Path.Combine(root, entry.FullName));
            if (entry.Name.Length == 0 || Path.GetDirectoryName(target) != root.TrimEnd(Path.DirectorySeparatorChar))
                throw new PeftSharpException($"artefact entry '{entry.FullName}': not a plain file name, expected the files of one adapter folder");
            entry.ExtractToFile(target, overwrite: true);
        }
    }

    /// <summary>Whether a run of <paramref name="method"/> (a method spec such as "lora" or "ssf+lora") keeps its
    /// weights under <paramref name="keep"/>: full fine-tuning's only with <see cref="KeepWeights.All"/>.</summary>
    public static bool Keeps(this KeepWeights keep, string method) => keep switch
    {
        KeepWeights.None => false,
        KeepWeights.All => true,
        _ => !method.Split('+', StringSplitOptions.TrimEntries).Contains("full"),
    };

    /// <summary>Writes the stored adapter of run <paramref name="runId"/> into <paramref name="directory"/>; false
    /// when the run has none (trained before artefacts were kept, or with weights not kept).</summary>
    public static bool ExportAdapter(IResultsStore db, long runId, string directory)
    {
        if (db.GetArtifact(runId, Adapter) is not { } zip) return false;
        UnpackFolder(zip, directory);
        return true;
    }
}

/// <summary>Which finished runs keep their trained weights in the results store.</summary>
public enum KeepWeights
{
    /// <summary>None: only metrics and predictions.</summary>
    None,
    /// <summary>Every method's adapter except full fine-tuning (whose "adapter" is a whole model).</summary>
    Adapters,
    /// <summary>Full fine-tuning's weights too.</summary>
    All,
}
