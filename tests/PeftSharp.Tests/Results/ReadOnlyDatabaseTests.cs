using PeftSharp.Results;
using PeftSharp.Tests.Cli;
using PeftSharp.Tests.Training;

namespace PeftSharp.Tests.Results;

/// <summary>
/// A database that cannot be written fails at open, before any training, in one line naming it. The tests run as
/// root, which writes whatever the mode bits say; the check treats "no write bit at all" as read-only too, so that is
/// what they set (for other users access(2) says the same).
/// </summary>
public sealed class ReadOnlyDatabaseTests : IDisposable
{
    const UnixFileMode ReadOnlyFile = UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
    const UnixFileMode ReadOnlyFolder = ReadOnlyFile | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
    const UnixFileMode Writable = ReadOnlyFolder | UnixFileMode.UserWrite;

    readonly string dir = TestFiles.TempDir("peftsharp-readonly");
    string DbPath => Path.Combine(dir, "results.db");

    public void Dispose()
    {
        foreach (var path in Directory.GetFileSystemEntries(dir, "*", SearchOption.AllDirectories).Append(dir))
            File.SetUnixFileMode(path, Writable);
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    void CreateDb() => ResultsDb.Open(DbPath).Dispose();

    [Fact]
    public void A_read_only_database_file_fails_at_open_naming_it()
    {
        CreateDb();
        File.SetUnixFileMode(DbPath, ReadOnlyFile);
        var e = Assert.Throws<PeftSharpException>(() => ResultsDb.Open(DbPath));
        Assert.Equal($"{DbPath}: the results database is not writable (read-only file), expected a file PeftSharp can write", e.Message);
        File.SetUnixFileMode(DbPath, Writable);
        ResultsDb.Open(DbPath).Dispose();   // writable again: opens
    }

    [Fact]
    public void A_database_in_a_read_only_folder_fails_at_open_whether_or_not_it_exists()
    {
        CreateDb();
        File.SetUnixFileMode(dir, ReadOnlyFolder);
        Assert.Contains($"the folder {dir} is not writable", Assert.Throws<PeftSharpException>(() => ResultsDb.Open(DbPath)).Message);
        Assert.Contains("is not writable", Assert.Throws<PeftSharpException>(() => ResultsDb.Open(Path.Combine(dir, "new.db"))).Message);
    }

    [Fact]
    public void An_unwritable_artifact_folder_fails_at_open_naming_it()
    {
        CreateDb();
        string artifacts = DbPath + ".artifacts";
        Directory.CreateDirectory(artifacts);
        File.SetUnixFileMode(artifacts, ReadOnlyFolder);
        var e = Assert.Throws<PeftSharpException>(() => ResultsDb.Open(DbPath));
        Assert.StartsWith($"{artifacts}: the artefact folder of {DbPath} is not writable", e.Message);
    }

    [Fact]
    public void Train_on_a_read_only_database_exits_2_before_training()
    {
        CreateDb();
        File.SetUnixFileMode(DbPath, ReadOnlyFile);
        var r = CliRunner.Run("train", "--data", TinyVtab.Create(Path.Combine(dir, "task")), "--method", "lora", "--checkpoint", TinyVtab.Backbone,
                              "--epochs", "1", "--warmup", "0", "--db", DbPath, "--quiet");
        Assert.Equal(2, r.ExitCode);
        CliRunner.AssertOneLineError(r, $"{DbPath}: the results database is not writable");
        Assert.DoesNotContain("training", r.Stdout);
    }
}
