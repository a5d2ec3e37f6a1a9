using System.Runtime.InteropServices;

namespace PeftSharp.Interop;

/// <summary>
/// How libtorch's OpenMP threads wait between parallel regions. libgomp's default spins (up to 300 000 iterations)
/// whenever a process has no more threads than the machine has cores, which assumes the cores are its own. On a machine
/// shared with other work a spinning thread burns the time slice its partner needs to reach the barrier: at load 10–15
/// on 2 cores a LoRA step of the 6-block video ViT (batch 32, 65 tokens) took 3.5–5.7 s with two spinning threads,
/// 0.7–1.1 s with one, and 0.65–0.82 s with two passive (sleeping) threads, for a fifth of the CPU time. Passive waiting
/// costs a futex wake-up per parallel region where the cores are idle.
/// </summary>
public static class OpenMpWait
{
    public const string Variable = "OMP_WAIT_POLICY";

    /// <summary>Sets OMP_WAIT_POLICY=PASSIVE in the native environment unless the user set it (ACTIVE restores the
    /// spinning). libgomp reads it once, when libtorch is loaded, so call this before the first torch call; .NET's
    /// Environment.SetEnvironmentVariable does not reach the native environment on Unix, hence setenv. Returns the
    /// policy in force, or null where it could not be set (not glibc, or libtorch already loaded).</summary>
    public static string? PassiveUnlessSet()
    {
        string? given = Environment.GetEnvironmentVariable(Variable);
        if (!string.IsNullOrEmpty(given)) return given;
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            return setenv(Variable, "PASSIVE", 1) == 0 ? "PASSIVE" : null;   // unset or empty (libgomp ignores empty)
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    [DllImport("libc", EntryPoint = "setenv")]
    static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);
}
