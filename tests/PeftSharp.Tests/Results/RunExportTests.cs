using System.Text;
using System.Text.Json;
using PeftSharp.Results;
using static PeftSharp.Tests.Results.ResultsTestData;

namespace PeftSharp.Tests.Results;

public sealed class RunExportTests : IDisposable
{
    readonly string dir = TestFiles.TempDir("peftsharp-results-export");
    readonly List<RunRecord> runs;

    public RunExportTests()
    {
        using var db = ResultsDb.Open(Path.Combine(dir, "results.db"));
        long ok = db.BeginRun(Spec(1), Context with { DatasetPath = "/data/dtd, \"copy\"" });
        db.FinishRun(ok, Outcome(0.625, 99), Predictions(1, 3, 3));
        long failed = db.BeginRun(Spec(2, sweep: null), Context);
        db.FailRun(failed, "line one\r\nline \"two\", with comma");
        runs = db.Runs().ToList();
    }

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }

    [Fact]
    public void Csv_follows_rfc_4180()
    {
        string csv = RunExport.ToCsv(runs);
        var rows = ParseCsv(csv);
        Assert.Equal(3, rows.Count);
        Assert.All(rows, r => Assert.Equal(rows[0].Count, r.Count));
        var header = rows[0];
        string Cell(int row, string column) => rows[row][header.IndexOf(column)];

        Assert.Equal("/data/dtd, \"copy\"", Cell(1, "dataset_path"));
        Assert.Equal("0.625", Cell(1, "top1"));
        Assert.Equal("99", Cell(1, "trainable_params"));
        Assert.Equal("0.001", Cell(1, "lr"));
        Assert.Equal("""{"alpha":16,"rank":8,"run":1,"targets":"qkv"}""", Cell(1, "hyper"));
        Assert.Equal("finished", Cell(1, "status"));
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", Cell(1, "started_utc"));
        Assert.Equal("failed", Cell(2, "status"));
        Assert.Equal("line one\r\nline \"two\", with comma", Cell(2, "error"));
        Assert.Equal("", Cell(2, "top1"));
        Assert.Equal("", Cell(2, "sweep_id"));
        // Quoted exactly where needed, with doubled quotes, and CRLF record ends.
        Assert.Contains(",\"line one\r\nline \"\"two\"\", with comma\"\r\n", csv);
        Assert.Contains(",finished,", csv);
        Assert.EndsWith("\r\n", csv);
    }

    [Fact]
    public void Json_nests_the_json_columns()
    {
        using var doc = JsonDocument.Parse(RunExport.ToJson(runs));
        var array = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, array.Count);
        var finished = array[0];
        Assert.Equal(8, finished.GetProperty("hyper").GetProperty("rank").GetInt32());
        Assert.Equal(0.05, finished.GetProperty("metrics").GetProperty("ece").GetDouble());
        Assert.Equal(0.625, finished.GetProperty("top1").GetDouble());
        Assert.Equal(1e-4, finished.GetProperty("weight_decay").GetDouble());
        Assert.Equal("search", finished.GetProperty("stage").GetString());
        Assert.Equal(runs[0].Key, finished.GetProperty("key").GetString());
        var failed = array[1];
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("top1").ValueKind);
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("metrics").ValueKind);
        Assert.Equal("line one\r\nline \"two\", with comma", failed.GetProperty("error").GetString());
    }

    [Fact]
    public void The_text_table_is_aligned()
    {
        var lines = RunExport.ToTable(runs).TrimEnd('\n').Split('\n');
        Assert.Equal(4, lines.Length);
        Assert.StartsWith("id", lines[0]);
        Assert.Matches("^-+  -+", lines[1]);
        Assert.Contains("62.50", lines[2]);
        Assert.Contains("failed", lines[3]);
        int top1Column = lines[0].IndexOf("top1 %") + "top1 %".Length;
        Assert.Equal("62.50", lines[2][(top1Column - 5)..top1Column]);   // numbers right-aligned under their header
        Assert.All(lines, l => Assert.Equal(l.TrimEnd(), l));
    }

    [Fact]
    public void An_empty_list_exports_a_header_only()
    {
        Assert.Equal(1, ParseCsv(RunExport.ToCsv(Array.Empty<RunRecord>())).Count);
        Assert.Equal("[]", RunExport.ToJson(Array.Empty<RunRecord>()));
    }

    /// <summary>A strict RFC 4180 reader, so the test checks the format rather than our own writer's habits.</summary>
    static List<List<string>> ParseCsv(string text)
    {
        var rows = new List<List<string>>();
        var row = new List<string>();
        var field = new StringBuilder();
        int i = 0;
        while (i < text.Length)
        {
            if (text[i] == '"')
            {
                i++;
                while (true)
                {
                    Assert.True(i < text.Length, "unterminated quoted field");
                    if (text[i] == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i += 2; }
                    else if (text[i] == '"') { i++; break; }
                    else field.Append(text[i++]);
                }
            }
            while (i < text.Length && text[i] != ',' && text[i] != '\r')
            {
                Assert.NotEqual('"', text[i]);
                Assert.NotEqual('\n', text[i]);
                field.Append(text[i++]);
            }
            row.Add(field.ToString());
            field.Clear();
            if (i < text.Length && text[i] == ',') { i++; continue; }
            Assert.True(i + 1 < text.Length && text[i] == '\r' && text[i + 1] == '\n', "records must end with CRLF");
            i += 2;
            rows.Add(row);
            row = new List<string>();
        }
        return rows;
    }
}
