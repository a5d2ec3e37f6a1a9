using System.Collections.Concurrent;
using System.IO.Compression;
using System.Text;

namespace PeftSharp.Text;

/// <summary>
/// CLIP's byte-level BPE model: the 49408-entry vocabulary, the merge ranks and a cache of encoded words.
/// Built from a merges file the way open_clip's SimpleTokenizer builds it.
/// </summary>
internal sealed class ClipBpe
{
    /// <summary>open_clip keeps only merges[1 : 49152-256-2+1] of the file, so the vocabulary has 49408 entries.</summary>
    internal const int MergeCount = 49152 - 256 - 2;

    internal const string StartOfTextToken = "<start_of_text>";
    internal const string EndOfTextToken = "<end_of_text>";
    private const string EndOfWord = "</w>";
    private const string EmbeddedResourceName = "PeftSharp.Text.bpe_simple_vocab_16e6.txt.gz";

    // bytes_to_unicode: each byte gets a printable, non-space character so BPE never sees whitespace or controls.
    private static readonly byte[] OrderedBytes = BuildByteOrder();
    private static readonly char[] ByteToChar = BuildByteToChar(OrderedBytes);
    private static readonly Dictionary<char, byte> CharToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private readonly Dictionary<string, int> _encoder;
    private readonly string[] _decoder;
    private readonly Dictionary<(string First, string Second), int> _ranks;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private ClipBpe(IReadOnlyList<(string First, string Second)> merges)
    {
        _decoder = BuildVocabulary(merges);
        // Later duplicates win, as with Python's dict(zip(...)).
        _encoder = new Dictionary<string, int>(_decoder.Length, StringComparer.Ordinal);
        for (int id = 0; id < _decoder.Length; id++) _encoder[_decoder[id]] = id;
        _ranks = new Dictionary<(string, string), int>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++) _ranks[merges[rank]] = rank;
    }

    internal int VocabularySize => _decoder.Length;

    internal int IdOf(string token) => _encoder[token];

    /// <summary>Loads the merges shipped inside this assembly.</summary>
    internal static ClipBpe FromEmbeddedResource()
    {
        using var stream = typeof(ClipBpe).Assembly.GetManifestResourceStream(EmbeddedResourceName)
            ?? throw new InvalidOperationException($"Embedded resource {EmbeddedResourceName} is missing from PeftSharp.");
        return new ClipBpe(ParseMerges(ReadText(stream), EmbeddedResourceName));
    }

    /// <summary>Loads a merges file, gzip-compressed (as CLIP ships it) or plain text.</summary>
    internal static ClipBpe FromFile(string path)
    {
        if (!File.Exists(path))
            throw new PeftSharpException($"CLIP BPE merges file '{path}' was not found.");
        string text;
        try
        {
            using var stream = File.OpenRead(path);
            text = ReadText(stream);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or DecoderFallbackException or UnauthorizedAccessException)
        {
            throw new PeftSharpException($"CLIP BPE merges file '{path}' could not be read: {e.Message}", e);
        }
        return new ClipBpe(ParseMerges(text, path));
    }

    /// <summary>BPE ids of one pre-token (raw text, before byte encoding). Results are cached per pre-token.</summary>
    internal int[] EncodeWord(string word)
    {
        if (_cache.TryGetValue(word, out var ids)) return ids;
        ids = word is StartOfTextToken or EndOfTextToken
            ? [_encoder[word]] // open_clip seeds its cache with the special tokens, so they are never split
            : MergeSymbols(ByteEncode(word)).Select(symbol => _encoder[symbol]).ToArray();
        _cache.TryAdd(word, ids);
        return ids;
    }

    /// <summary>Concatenates the tokens' byte symbols, decodes them as UTF-8 (invalid bytes → U+FFFD) and turns end-of-word marks into spaces.</summary>
    internal string Decode(IEnumerable<int> ids)
    {
        var symbols = new StringBuilder();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_decoder.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id must be in [0, {_decoder.Length}).");
            symbols.Append(_decoder[id]);
        }
        var bytes = new byte[symbols.Length];
        for (int i = 0; i < symbols.Length; i++) bytes[i] = CharToByte[symbols[i]];
        return Encoding.UTF8.GetString(bytes).Replace(EndOfWord, " ");
    }

    private static string ByteEncode(string word)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(word);
        var chars = new char[utf8.Length];
        for (int i = 0; i < utf8.Length; i++) chars[i] = ByteToChar[utf8[i]];
        return new string(chars);
    }

    /// <summary>
    /// Starts from single byte symbols (the last one marked end-of-word) and repeatedly merges every occurrence of the
    /// adjacent pair with the lowest rank, until no adjacent pair has a rank.
    /// </summary>
    private List<string> MergeSymbols(string encoded)
    {
        var word = new List<string>(encoded.Length);
        foreach (char c in encoded) word.Add(c.ToString());
        word[^1] += EndOfWord;

        while (word.Count > 1)
        {
            var best = LowestRankedPair(word);
            if (best is null) break;
            word = MergePair(word, best.Value.First, best.Value.Second);
        }
        return word;
    }

    private (string First, string Second)? LowestRankedPair(List<string> word)
    {
        (string, string)? best = null;
        int bestRank = int.MaxValue;
        for (int i = 0; i + 1 < word.Count; i++)
        {
            if (_ranks.TryGetValue((word[i], word[i + 1]), out int rank) && rank < bestRank)
            {
                bestRank = rank;
                best = (word[i], word[i + 1]);
            }
        }
        return best;
    }

    /// <summary>Left-to-right, non-overlapping replacement of (first, second) by their concatenation.</summary>
    private static List<string> MergePair(List<string> word, string first, string second)
    {
        var merged = new List<string>(word.Count);
        for (int i = 0; i < word.Count; i++)
        {
            if (i + 1 < word.Count && word[i] == first && word[i + 1] == second)
            {
                merged.Add(first + second);
                i++;
            }
            else
            {
                merged.Add(word[i]);
            }
        }
        return merged;
    }

    /// <summary>Byte symbols in bytes_to_unicode order, the same with end-of-word marks, one entry per merge, then the specials.</summary>
    private static string[] BuildVocabulary(IReadOnlyList<(string First, string Second)> merges)
    {
        var vocabulary = new List<string>(2 * 256 + merges.Count + 2);
        foreach (byte b in OrderedBytes) vocabulary.Add(ByteToChar[b].ToString());
        foreach (byte b in OrderedBytes) vocabulary.Add(ByteToChar[b] + EndOfWord);
        foreach (var (first, second) in merges) vocabulary.Add(first + second);
        vocabulary.Add(StartOfTextToken);
        vocabulary.Add(EndOfTextToken);
        return vocabulary.ToArray();
    }

    // Printable Latin-1 bytes keep their own character; the rest (controls, space, 0x7F-0xA0, 0xAD) come after them.
    private static bool IsPrintableByte(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;

    /// <summary>Bytes in bytes_to_unicode order (printable ones first), which is the order of the vocabulary's first 256 entries.</summary>
    private static byte[] BuildByteOrder()
    {
        var bytes = Enumerable.Range(0, 256);
        return bytes.Where(IsPrintableByte).Concat(bytes.Where(b => !IsPrintableByte(b))).Select(b => (byte)b).ToArray();
    }

    /// <summary>Printable bytes map to themselves; the others map to U+0100, U+0101, ... in byte order.</summary>
    private static char[] BuildByteToChar(byte[] orderedBytes)
    {
        var map = new char[256];
        int next = 256;
        foreach (byte b in orderedBytes) map[b] = IsPrintableByte(b) ? (char)b : (char)next++;
        return map;
    }

    private static string ReadText(Stream stream)
    {
        var content = new MemoryStream();
        stream.CopyTo(content);
        // Accept both the gzip file CLIP ships and an uncompressed copy: look for the gzip magic bytes.
        bool gzipped = content.Length >= 2 && content.GetBuffer()[0] == 0x1F && content.GetBuffer()[1] == 0x8B;
        content.Position = 0;
        using var source = gzipped ? new GZipStream(content, CompressionMode.Decompress) : (Stream)content;
        using var reader = new StreamReader(source, new UTF8Encoding(false, throwOnInvalidBytes: true));
        return reader.ReadToEnd();
    }

    /// <summary>Skips the header line and keeps the first <see cref="MergeCount"/> merges, each "first second".</summary>
    private static List<(string, string)> ParseMerges(string text, string source)
    {
        string[] lines = text.Split('\n');
        if (lines.Length < MergeCount + 1)
            throw new PeftSharpException(
                $"CLIP BPE merges file '{source}' has {Math.Max(lines.Length - 1, 0)} merge lines; expected at least {MergeCount} after the header line.");
        var merges = new List<(string, string)>(MergeCount);
        for (int i = 1; i <= MergeCount; i++)
        {
            string[] parts = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
                throw new PeftSharpException(
                    $"CLIP BPE merges file '{source}' line {i + 1} is not a merge of two symbols: '{Shorten(lines[i])}'.");
            merges.Add((parts[0], parts[1]));
        }
        return merges;
    }

    private static string Shorten(string line) => line.Length <= 40 ? line.TrimEnd('\r') : line[..40] + "…";
}
