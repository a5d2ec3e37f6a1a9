using PeftSharp.Checkpoints;

namespace PeftSharp.Cli.Commands;

/// <summary>Lists a safetensors file's tensors, metadata and key convention.</summary>
public sealed class InspectCommand : ICommand
{
    public string Name => "inspect";
    public string Summary => "list a safetensors file's tensors, dtypes, shapes, metadata and key convention";
    public string Usage => "peftsharp inspect FILE.safetensors";

    public int Run(CommandLine line)
    {
        line.RejectUnknown(maxPositional: 1);
        if (line.Positional.Count == 0) throw new PeftSharpException("inspect: expected the path of a safetensors file");
        using var file = SafeTensorsFile.Open(line.Positional[0]);
        Console.Write(SafeTensors.Describe(file));
        Console.WriteLine($"key convention: {KeyMaps.Detect(file.Tensors.Select(t => t.Name))}");
        return 0;
    }
}
