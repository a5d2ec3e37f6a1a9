using System.Runtime.InteropServices;

namespace PeftSharp.Results;

/// <summary>
/// Whether this process may write a file or folder, asked before any work starts (a read-only results database
/// should stop a run at open, not after an hour of training). access(2) answers for the process's user and for
/// read-only mounts; root passes it whatever the mode bits say, so a file or folder with no write bit at all counts as
/// read-only too: someone made it so on purpose.
/// </summary>
internal static partial class WritableCheck
{
    const int WriteOk = 2;   // W_OK

    public static bool IsWritable(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.Exists(path) ? !File.GetAttributes(path).HasFlag(FileAttributes.ReadOnly) : true;
        const UnixFileMode anyWrite = UnixFileMode.UserWrite | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;
        if ((File.GetUnixFileMode(path) & anyWrite) == 0) return false;
        return Access(path, WriteOk) == 0;
    }

    [LibraryImport("libc", EntryPoint = "access", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);
}
