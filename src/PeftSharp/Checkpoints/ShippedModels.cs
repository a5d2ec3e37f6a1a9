namespace PeftSharp.Checkpoints;

/// <summary>
/// The models that ship with PeftSharp. The build copies them into a models/ folder next to this assembly (and the
/// .NET tool package carries them there), so they are found wherever the tool runs from, never through the current
/// folder.
/// </summary>
public static class ShippedModels
{
    public const string DefaultVitName = "peftsharp-vit-tiny6-p8-32";
    public const string DefaultClipName = "peftsharp-clip-tiny-p8-32";

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
    public static string RequireDefaultVit() => Require(DefaultVit, "the shipped default backbone", "reinstall PeftSharp, or name another checkpoint");

    /// <summary>The default CLIP model: both towers pretrained here on rendered image–caption pairs (see its card).</summary>
    public static string DefaultClip => Path.Combine(Directory, DefaultClipName + ".safetensors");

    /// <summary>The default CLIP model, or a clear error when the installation lacks it.</summary>
    public static string RequireDefaultClip() => Require(DefaultClip, "the shipped CLIP model", "pretrain one (peftsharp pretrain-clip), or name another checkpoint");

    static string Require(string path, string what, string remedy) =>
        File.Exists(path) ? path : throw new PeftSharpException($"{path}: {what} is missing from this installation ({remedy})");
}
