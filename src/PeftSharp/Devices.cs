using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp;

/// <summary>Device selection: CPU by default; CUDA when the application references a TorchSharp CUDA runtime.</summary>
public static class Devices
{
    public static Device Parse(string? name)
    {
        switch ((name ?? "cpu").ToLowerInvariant())
        {
            case "cpu":
                return CPU;
            case var s when s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal):
                if (!cuda.is_available())
                    throw new PeftSharpException($"device '{name}': CUDA is not available (reference the TorchSharp-cuda-linux package instead of TorchSharp-cpu and run on a machine with an NVIDIA GPU)");
                return device(s);
            default:
                throw new PeftSharpException($"device '{name}': expected cpu, cuda or cuda:N");
        }
    }
}
