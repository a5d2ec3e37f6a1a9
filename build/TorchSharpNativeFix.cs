// Makes TorchSharp-cpu 0.107.0's libLibTorchSharp.so load on systems whose libstdc++ predates GLIBCXX_3.4.32
// (Debian 12 ships 3.4.30). The library's only symbol under that version, _ZSt21ios_base_library_initv, is never
// relocated, so marking the version requirement WEAK (VER_FLG_WEAK in .gnu.version_r) lets the dynamic loader accept
// the library while every symbol it really uses still resolves. Used by build/TorchSharpNativeFix.targets (compiled
// as an inline MSBuild task, hence netstandard2.0 APIs only) and by the tests (compiled with PEFTSHARP_TESTS, which leaves the MSBuild task out).
#nullable enable
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;

namespace PeftSharp.Build
{
    public enum VersionNeedPatch { Patched, AlreadyWeak, NotRequired }

    public static class ElfVersionNeeds
    {
        const uint ShtGnuVerneed = 0x6ffffffe;
        const ushort VerFlgWeak = 0x2;

        /// <summary>Marks every version-need entry named <paramref name="version"/> WEAK, in place.</summary>
        public static VersionNeedPatch MarkWeak(byte[] elf, string version)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("only 64-bit little-endian ELF files are supported");
            ulong shoff = U64(elf, 40);
            int shentsize = U16(elf, 58), shnum = U16(elf, 60);
            if (shoff == 0 || shnum == 0 || shentsize < 64 || shoff + (ulong)(shnum * shentsize) > (ulong)elf.Length)
                throw new InvalidDataException("ELF section header table missing or out of range");

            var result = VersionNeedPatch.NotRequired;
            for (int s = 0; s < shnum; s++)
            {
                int sh = checked((int)shoff + s * shentsize);
                if (U32(elf, sh + 4) != ShtGnuVerneed) continue;
                int offset = checked((int)U64(elf, sh + 24));
                int strtab = checked((int)U64(elf, checked((int)shoff + (int)U32(elf, sh + 40) * shentsize) + 24));
                int entries = (int)U32(elf, sh + 44);
                int need = offset;
                for (int n = 0; n < entries; n++)
                {
                    int count = U16(elf, need + 2);
                    int aux = need + (int)U32(elf, need + 8);
                    for (int a = 0; a < count; a++)
                    {
                        if (CString(elf, strtab + (int)U32(elf, aux + 8)) == version)
                        {
                            ushort flags = U16(elf, aux + 4);
                            if ((flags & VerFlgWeak) != 0)
                            {
                                if (result == VersionNeedPatch.NotRequired) result = VersionNeedPatch.AlreadyWeak;
                            }
                            else
                            {
                                flags |= VerFlgWeak;
                                elf[aux + 4] = (byte)flags;
                                elf[aux + 5] = (byte)(flags >> 8);
                                result = VersionNeedPatch.Patched;
                            }
                        }
                        aux += (int)U32(elf, aux + 12);
                    }
                    uint next = U32(elf, need + 12);
                    if (next == 0) break;
                    need += (int)next;
                }
            }
            return result;
        }

        /// <summary>True when the ELF file defines or mentions the version string (a cheap test on libstdc++).</summary>
        public static bool FileMentionsVersion(string path, string version)
        {
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            byte[] data = File.ReadAllBytes(path);
            return IndexOf(data, needle) >= 0;
        }

        /// <summary>The path of the system libstdc++.so.6, from the loader cache or the usual places; null if none.</summary>
        public static string? FindSystemLibStdCxx()
        {
            try
            {
                var psi = new ProcessStartInfo("ldconfig", "-p") { RedirectStandardOutput = true, UseShellExecute = false };
                using var p = Process.Start(psi);
                if (p != null)
                {
                    string output = p.StandardOutput.ReadToEnd();
                    p.WaitForExit();
                    foreach (var line in output.Split('\n'))
                    {
                        int arrow = line.IndexOf("=>", StringComparison.Ordinal);
                        if (line.TrimStart().StartsWith("libstdc++.so.6 ", StringComparison.Ordinal) && arrow > 0)
                        {
                            string path = line.Substring(arrow + 2).Trim();
                            if (File.Exists(path)) return path;
                        }
                    }
                }
            }
            catch (Exception) { /* no ldconfig: fall back to the usual paths */ }
            foreach (var dir in new[] { "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                                        "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib" })
            {
                string path = Path.Combine(dir, "libstdc++.so.6");
                if (File.Exists(path)) return path;
            }
            return null;
        }

        /// <summary>Patches the file in place through a temporary copy (so a hard link into the NuGet cache is never
        /// written through), keeping its timestamp so incremental builds do not copy it again.</summary>
        public static VersionNeedPatch PatchFile(string path, string version)
        {
            byte[] data = File.ReadAllBytes(path);
            var result = MarkWeak(data, version);
            if (result != VersionNeedPatch.Patched) return result;
            var stamp = File.GetLastWriteTimeUtc(path);
            string tmp = path + ".weak-tmp";
            File.WriteAllBytes(tmp, data);
            File.Delete(path);
            File.Move(tmp, path);
            File.SetLastWriteTimeUtc(path, stamp);
            return result;
        }

        static int IndexOf(byte[] data, byte[] needle)
        {
            for (int i = Array.IndexOf(data, needle[0]); i >= 0 && i <= data.Length - needle.Length;
                 i = Array.IndexOf(data, needle[0], i + 1))
            {
                int j = 1;
                while (j < needle.Length && data[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        static ushort U16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);
        static uint U32(byte[] b, int o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
        static ulong U64(byte[] b, int o) => U32(b, o) | (ulong)U32(b, o + 4) << 32;

        static string CString(byte[] b, int o)
        {
            int end = o;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, o, end - o);
        }
    }

#if !PEFTSHARP_TESTS
    /// <summary>MSBuild task: patch every libLibTorchSharp.so below the given folders when the system needs it.</summary>
    public class MarkTorchSharpGlibcxxWeak : Microsoft.Build.Utilities.Task
    {
        public string Folders { get; set; } = "";
        public string Version { get; set; } = "GLIBCXX_3.4.32";

        public override bool Execute()
        {
            if (!System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Linux)) return true;
            string? libstdcxx = ElfVersionNeeds.FindSystemLibStdCxx();
            if (libstdcxx != null && ElfVersionNeeds.FileMentionsVersion(libstdcxx, Version))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"{libstdcxx} provides {Version}; nothing to patch");
                return true;
            }
            foreach (var folder in Folders.Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries))
            {
                if (!Directory.Exists(folder)) continue;
                foreach (var lib in Directory.EnumerateFiles(folder, "libLibTorchSharp.so", SearchOption.AllDirectories))
                {
                    var result = ElfVersionNeeds.PatchFile(lib, Version);
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"{lib}: {Version} {result}");
                }
            }
            return true;
        }
    }
#endif
}
