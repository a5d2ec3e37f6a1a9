namespace PeftSharp.Checkpoints;

/// <summary>
/// The models that ship with PeftSharp. The build copies them into a models/ folder next to this assembly (and the
/// .NET tool package carries them there), so they are found wherever the tool runs from, never through the current
/// folder.
/// </summary>
public static class ShippedModels
{
    public const string DefaultVitName = "peftsharp-vit-tiny6-p8-32";

    /// <summary>The models/ folder beside the PeftSharp assembly.</summary>
    public static string Directory
    {
        get
        {
            string? assemblyDir = Path.GetDirectoryName(typeof(ShippedModels).Assembly.Location);
            return Path.Combine(string.IsNullOrEmpty(assemblyDir) ? AppContext.BaseDirectory : assemblyDir, "models");
        }
    }

    /// <summary>The default backbone of the benchmark: a ViT of ViT-Tiny width pretrained here (see its card).</summary>
    public static string DefaultVit => Path.Combine(Directory, DefaultVitName + ".safetensors");

    /// <summary>The default backbone, or a clear error when the installation lacks it.</summary>
    public static string RequireDefaultVit()
    {
        string path = DefaultVit;
        if (!File.Exists(path))
            throw new PeftSharpException($"{path}: the shipped default backbone is missing from this installation (reinstall PeftSharp, or pass --checkpoint FILE)");
        return path;
    }
}
