using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Interop;

/// <summary>
/// libtorch's automatic mixed precision (the engine behind PyTorch's <c>torch.autocast</c>). Core TorchSharp does not
/// expose it, so this calls the exported C++ functions of libtorch_cpu directly. The state is per thread, like
/// PyTorch's: a scope covers the forward pass and the loss; the backward pass runs after the scope, in the dtypes the
/// forward chose.
/// </summary>
public static class Autocast
{
    public static Precision ParsePrecision(string? name) => (name ?? "fp32").ToLowerInvariant() switch
    {
        "fp32" or "float32" => Precision.Float32,
        "bf16" or "bfloat16" => Precision.BFloat16,
        _ => throw new PeftSharpException($"precision '{name}': expected fp32 or bf16"),
    };

    public static string Name(Precision precision) => precision == Precision.BFloat16 ? "bf16" : "fp32";

    /// <summary>True when this CPU has bfloat16 dot-product instructions (AVX-512 BF16 or AMX), without which
    /// bfloat16 products are emulated and slower than float32.</summary>
    public static bool CpuHasNativeBFloat16 { get; } = ReadCpuFlags().Overlaps(["avx512_bf16", "amx_bf16"]);

    /// <summary>Runs the operations issued on this thread until disposal under autocast to <paramref name="precision"/>
    /// on <paramref name="device"/>'s type; float32 returns a scope that changes nothing.</summary>
    public static IDisposable Enter(Precision precision, Device device) =>
        precision == Precision.Float32 ? NoScope.Instance : new Scope(device.type, ScalarType.BFloat16);

    /// <summary>The autocast precision in force on this thread for <paramref name="device"/>'s type (to run a
    /// recomputation, as gradient checkpointing does, under the same precision as the original forward).</summary>
    public static Precision Current(Device device) =>
        Native.IsEnabled((sbyte)device.type) && Native.GetDtype((sbyte)device.type) == (sbyte)ScalarType.BFloat16 ? Precision.BFloat16 : Precision.Float32;

    sealed class NoScope : IDisposable
    {
        public static readonly NoScope Instance = new();
        public void Dispose() { }
    }

    sealed class Scope : IDisposable
    {
        readonly sbyte device;
        readonly bool wasEnabled;
        readonly sbyte previousDtype;
        bool disposed;

        public Scope(DeviceType deviceType, ScalarType dtype)
        {
            device = (sbyte)deviceType;
            wasEnabled = Native.IsEnabled(device);
            previousDtype = Native.GetDtype(device);
            Native.SetDtype(device, (sbyte)dtype);
            Native.SetEnabled(device, true);
            Native.IncrementNesting();
        }

        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            // The outermost scope drops the cached casts of the trainable weights, as torch.autocast's exit does.
            if (Native.DecrementNesting() == 0) Native.ClearCache();
            Native.SetEnabled(device, wasEnabled);
            Native.SetDtype(device, previousDtype);
        }
    }

    static HashSet<string> ReadCpuFlags()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("flags", StringComparison.Ordinal))
                    return [.. line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return [];
    }

    /// <summary>at::autocast in libtorch_cpu (loaded by TorchSharp before any of these run). DeviceType and
    /// ScalarType are int8 enums in C++.</summary>
    static class Native
    {
        const string Lib = "torch_cpu";

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb")]
        public static extern void SetEnabled(sbyte device, [MarshalAs(UnmanagedType.U1)] bool enabled);

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE")]
        [return: MarshalAs(UnmanagedType.U1)]
        public static extern bool IsEnabled(sbyte device);

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE")]
        public static extern void SetDtype(sbyte device, sbyte dtype);

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE")]
        public static extern sbyte GetDtype(sbyte device);

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast17increment_nestingEv")]
        public static extern int IncrementNesting();

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast17decrement_nestingEv")]
        public static extern int DecrementNesting();

        [DllImport(Lib, EntryPoint = "_ZN2at8autocast11clear_cacheEv")]
        public static extern void ClearCache();
    }
}
