using System.IO.Compression;
using System.Text.Json;
using PeftSharp.Text;
using TorchSharp;

namespace PeftSharp.Tests.Text;

public class ClipTokenizerTests
{
    private static readonly string TestDataDir = Path.Combine(AppContext.BaseDirectory, "TestData");
    private static readonly ClipTokenizer Tokenizer = new();

    private sealed record Case(string Text, long[] Ids);

    // Reference rows from open_clip 3.3.0's tokenize(), read from the test output folder.
    private static readonly Lazy<Case[]> Cases = new(() =>
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestDataDir, "clip_tokenizer_cases.json")));
        return json.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new Case(c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(id => id.GetInt64()).ToArray()))
            .ToArray();
    });

    public static TheoryData<int, string> CaseIndices()
    {
        var data = new TheoryData<int, string>();
        for (int i = 0; i < Cases.Value.Length; i++) data.Add(i, Cases.Value[i].Text);
        return data;
    }

    [Fact]
    public void Reference_file_has_cases_of_context_length_77()
    {
        Assert.True(Cases.Value.Length >= 10);
        Assert.All(Cases.Value, c => Assert.Equal(ClipTokenizer.DefaultContextLength, c.Ids.Length));
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Tokenize_matches_open_clip(int index, string text)
    {
        long[,] rows = Tokenizer.Tokenize([text]);
        Assert.Equal(Cases.Value[index].Ids, Row(rows, 0));
    }

    [Fact]
    public void Tokenize_batches_all_reference_cases_at_once()
    {
        var cases = Cases.Value;
        long[,] rows = Tokenizer.Tokenize(cases.Select(c => c.Text).ToArray());
        Assert.Equal(cases.Length, rows.GetLength(0));
        for (int i = 0; i < cases.Length; i++) Assert.True(cases[i].Ids.SequenceEqual(Row(rows, i)), $"Row {i} differs for: {cases[i].Text}");
    }

    [Fact]
    public void Encode_leaves_out_special_tokens()
    {
        Assert.Equal([320, 1125, 539, 320, 2368, 269], Tokenizer.Encode("a photo of a cat."));
        Assert.Empty(Tokenizer.Encode("   "));
    }

    [Theory]
    [InlineData("a photo of a cat.")]
    [InlineData("the quick brown fox jumps over the lazy dog, 42 times!")]
    [InlineData("résumé café naïve")]
    public void Decode_inverts_Encode_up_to_end_of_word_spaces(string text)
    {
        string decoded = Tokenizer.Decode(Tokenizer.Encode(text));
        Assert.EndsWith(" ", decoded);
        // Each end of word decodes as a space, so punctuation and digits come back space-separated.
        Assert.Equal(string.Join("", text.Split(' ')), decoded.Replace(" ", ""));
    }

    [Fact]
    public void Decode_spells_special_tokens()
    {
        Assert.Equal("<start_of_text>a cat <end_of_text>",
            Tokenizer.Decode([ClipTokenizer.StartOfText, 320, 2368, ClipTokenizer.EndOfText]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([ClipTokenizer.VocabSize]));
    }

    [Fact]
    public void Special_token_text_maps_to_its_id()
    {
        Assert.Equal([ClipTokenizer.StartOfText, 320, ClipTokenizer.EndOfText], Tokenizer.Encode("<start_of_text>a<END_OF_TEXT>"));
    }

    [Fact]
    public void Short_context_keeps_end_of_text_in_last_position()
    {
        long[,] rows = Tokenizer.Tokenize(["a photo of a cat."], contextLength: 4);
        Assert.Equal([ClipTokenizer.StartOfText, 320, 1125, ClipTokenizer.EndOfText], Row(rows, 0));
        Assert.Equal([ClipTokenizer.EndOfText], Row(Tokenizer.Tokenize(["cat"], contextLength: 1), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Tokenize(["cat"], contextLength: 0));
    }

    [Fact]
    public void TokenizeToTensor_is_int64_n_by_context_length_with_the_same_ids()
    {
        string[] texts = ["a photo of a cat.", "a bad photo of the ankle boot"];
        using var tensor = Tokenizer.TokenizeToTensor(texts, 16);
        Assert.Equal(torch.ScalarType.Int64, tensor.dtype);
        Assert.Equal([2L, 16L], tensor.shape);
        long[,] rows = Tokenizer.Tokenize(texts, 16);
        Assert.Equal(rows.Cast<long>().ToArray(), tensor.data<long>().ToArray());
    }

    [Fact]
    public void Html_entities_whitespace_and_case_are_cleaned_like_open_clip()
    {
        int[] expected = Tokenizer.Encode("t-shirt & top");
        Assert.Equal(expected, Tokenizer.Encode("  T-Shirt\t&amp;amp;\n TOP "));
        Assert.Equal(expected, Tokenizer.Encode("t-shirt &#38; top"));
    }

    [Fact]
    public void Curly_quotes_are_straightened_as_ftfy_does()
    {
        int[] expected = Tokenizer.Encode("don't \"stop\"");
        Assert.Equal(expected, Tokenizer.Encode("don’t “stop”"));
        // ftfy decodes entities before it straightens quotes.
        Assert.Equal(expected, Tokenizer.Encode("don&rsquo;t &#8220;stop&#x201D;"));
    }

    [Fact]
    public void Capital_sigma_lowercases_to_final_form_at_word_end()
    {
        Assert.Equal(Tokenizer.Encode("οδος σας"), Tokenizer.Encode("ΟΔΟΣ ΣΑΣ"));
        Assert.NotEqual(Tokenizer.Encode("οδοσ"), Tokenizer.Encode("ΟΔΟΣ"));
    }

    [Fact]
    public void Supplementary_plane_letters_stay_in_one_word()
    {
        // 𝐀𝐁 are letters outside the BMP; a UTF-16 regex would have read them as punctuation and merged them with '!'.
        Assert.Equal(
            Tokenizer.Encode("𝐀𝐁").Concat(Tokenizer.Encode("!")),
            Tokenizer.Encode("𝐀𝐁!"));
        Assert.Equal(Tokenizer.Encode("𝟏").Length + Tokenizer.Encode("𝟐").Length, Tokenizer.Encode("𝟏𝟐").Length);
    }

    [Fact]
    public void Merges_file_on_disk_gives_the_same_ids_as_the_embedded_one()
    {
        var fromFile = new ClipTokenizer(Path.Combine(TestDataDir, "bpe_simple_vocab_16e6.txt.gz"));
        string text = Cases.Value[1].Text;
        Assert.Equal(Tokenizer.Encode(text), fromFile.Encode(text));
    }

    [Fact]
    public void Missing_merges_file_is_reported_by_name()
    {
        string path = Path.Combine(Path.GetTempPath(), $"no_such_merges_{Guid.NewGuid():N}.txt.gz");
        var error = Assert.Throws<PeftSharpException>(() => new ClipTokenizer(path));
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Truncated_merges_file_is_reported_by_name()
    {
        string path = Path.Combine(Path.GetTempPath(), $"short_merges_{Guid.NewGuid():N}.txt.gz");
        try
        {
            using (var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest))
            using (var writer = new StreamWriter(gzip))
                writer.Write("#version: 0.2\ni n\nt h\n");
            var error = Assert.Throws<PeftSharpException>(() => new ClipTokenizer(path));
            Assert.Contains(path, error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Corrupt_merges_file_is_reported_by_name()
    {
        string path = Path.Combine(Path.GetTempPath(), $"corrupt_merges_{Guid.NewGuid():N}.txt.gz");
        try
        {
            // gzip magic followed by garbage
            File.WriteAllBytes(path, [0x1F, 0x8B, 0x08, 0x00, 0xFF, 0xFE, 0x01, 0x02, 0x03]);
            var error = Assert.Throws<PeftSharpException>(() => new ClipTokenizer(path));
            Assert.Contains(path, error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static long[] Row(long[,] rows, int row) =>
        Enumerable.Range(0, rows.GetLength(1)).Select(col => rows[row, col]).ToArray();
}
