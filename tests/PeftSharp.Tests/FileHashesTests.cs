using System.Security.Cryptography;

namespace PeftSharp.Tests;

/// <summary>A remembered hash is never served for a file that changed since.</summary>
public class FileHashesTests
{
    [Fact]
    public void A_file_is_hashed_again_once_it_changes()
    {
        string dir = TestFiles.TempDir("hashes");
        try
        {
            string path = Path.Combine(dir, "w.bin");
            string Expected() => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
            File.WriteAllBytes(path, [1, 2, 3]);
            Assert.Equal(Expected(), FileHashes.Sha256(path));
            Assert.Equal(Expected(), FileHashes.Sha256(path));
            File.WriteAllBytes(path, [1, 2, 3, 4]);                     // another size
            Assert.Equal(Expected(), FileHashes.Sha256(path));
            File.WriteAllBytes(path, [9, 9, 9, 9]);                     // same size, later write
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
            Assert.Equal(Expected(), FileHashes.Sha256(path));
            Assert.Contains("checkpoint file not found", Assert.Throws<PeftSharpException>(() => FileHashes.Sha256(Path.Combine(dir, "none"))).Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
