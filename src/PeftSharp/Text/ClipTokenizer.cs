using System.Globalization;
using System.Text;
using TorchSharp;

namespace PeftSharp.Text;

/// <summary>
/// CLIP's byte-level BPE tokenizer, reproducing open_clip's <c>SimpleTokenizer</c> / <c>tokenize()</c>: clean the text
/// (see <see cref="ClipTextCleaner"/> for how ftfy is stood in for), split it into words, numbers' digits and
/// punctuation runs, byte-encode each piece and apply BPE with end-of-word marks. Thread-safe.
/// </summary>
public sealed class ClipTokenizer
{
    public const int StartOfText = 49406;
    public const int EndOfText = 49407;
    public const int VocabSize = 49408;
    public const int DefaultContextLength = 77;

    // The embedded merges are parsed once, on first use, and shared (with their BPE cache) by every default tokenizer.
    private static readonly Lazy<ClipBpe> EmbeddedBpe = new(ClipBpe.FromEmbeddedResource, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly Lazy<ClipBpe> _bpe;

    /// <summary>A tokenizer using the CLIP merges shipped inside PeftSharp (bpe_simple_vocab_16e6).</summary>
    public ClipTokenizer() => _bpe = EmbeddedBpe;

    /// <summary>A tokenizer using another CLIP-style merges file (gzip or plain text); it is read now.</summary>
    /// <exception cref="PeftSharpException">The file is missing, unreadable or not a merges file with enough merges.</exception>
    public ClipTokenizer(string mergesPath)
    {
        ArgumentNullException.ThrowIfNull(mergesPath);
        // Read eagerly so a bad file is reported where it is named, not at the first Encode.
        var bpe = ClipBpe.FromFile(mergesPath);
        _bpe = new Lazy<ClipBpe>(bpe);
    }

    /// <summary>A shared tokenizer over the embedded merges.</summary>
    public static ClipTokenizer Default { get; } = new();

    /// <summary>Token ids of <paramref name="text"/>, without start/end-of-text tokens.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bpe = _bpe.Value;
        var ids = new List<int>();
        foreach (string piece in PreTokenize(ClipTextCleaner.Clean(text)))
            ids.AddRange(bpe.EncodeWord(piece));
        return ids.ToArray();
    }

    /// <summary>
    /// Text of the ids, as open_clip decodes it: every end of word becomes a space (so the result ends with one),
    /// special tokens appear as "&lt;start_of_text&gt;"/"&lt;end_of_text&gt;", and padding id 0 as "!".
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return _bpe.Value.Decode(ids);
    }

    /// <summary>
    /// One row per text: start-of-text, the text's ids, end-of-text, then zeros up to <paramref name="contextLength"/>.
    /// A row that would be longer is cut to <paramref name="contextLength"/> and its last position set to end-of-text.
    /// </summary>
    public long[,] Tokenize(IReadOnlyList<string> texts, int contextLength = DefaultContextLength) => Tokenize(texts, contextLength, out _);

    /// <summary><see cref="Tokenize(IReadOnlyList{string}, int)"/>; <paramref name="truncated"/> counts the rows that were cut.</summary>
    public long[,] Tokenize(IReadOnlyList<string> texts, int contextLength, out int truncated)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        var rows = new long[texts.Count, contextLength];
        truncated = 0;
        for (int row = 0; row < texts.Count; row++)
        {
            int[] ids = Encode(texts[row]);
            if (ids.Length + 2 > contextLength) truncated++;
            rows[row, 0] = StartOfText;
            int kept = Math.Min(ids.Length, contextLength - 1);
            for (int i = 0; i < kept; i++) rows[row, i + 1] = ids[i];
            // Position 1 + kept is the end-of-text slot, or the last slot when the row was cut.
            rows[row, Math.Min(kept + 1, contextLength - 1)] = EndOfText;
        }
        return rows;
    }

    /// <summary><see cref="Tokenize"/> as an int64 tensor of shape [texts.Count, contextLength] on the CPU.</summary>
    public torch.Tensor TokenizeToTensor(IReadOnlyList<string> texts, int contextLength = DefaultContextLength) =>
        TokenizeToTensor(texts, contextLength, out _);

    /// <summary><see cref="TokenizeToTensor(IReadOnlyList{string}, int)"/>, counting the rows that were cut.</summary>
    public torch.Tensor TokenizeToTensor(IReadOnlyList<string> texts, int contextLength, out int truncated)
    {
        long[,] rows = Tokenize(texts, contextLength, out truncated);
        var flat = new long[rows.Length];
        Buffer.BlockCopy(rows, 0, flat, 0, rows.Length * sizeof(long));
        return torch.tensor(flat, [texts.Count, contextLength], dtype: torch.int64);
    }

    // ---- pre-tokenizer -------------------------------------------------------------------------------------------

    private static readonly string[] Specials = [ClipBpe.StartOfTextToken, ClipBpe.EndOfTextToken];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    /// <summary>
    /// The pieces open_clip's pattern finds, tried in its order at each position:
    /// <c>&lt;start_of_text&gt;|&lt;end_of_text&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>
    /// (case-insensitive). Written by hand over code points because .NET's Regex classifies UTF-16 units, which would
    /// misread letters and digits outside the BMP (e.g. 𝐀, 𠀀) as punctuation.
    /// </summary>
    internal static IEnumerable<string> PreTokenize(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            var kind = KindAt(text, i, out int width);
            if (kind == CharKind.Space)
            {
                i += width;
                continue;
            }
            int length = LiteralAt(text, i, Specials) ?? LiteralAt(text, i, Contractions) ?? kind switch
            {
                CharKind.Letter => RunLength(text, i, CharKind.Letter),
                CharKind.Number => width, // digits are single tokens
                _ => RunLength(text, i, CharKind.Other),
            };
            yield return text.Substring(i, length);
            i += length;
        }
    }

    private enum CharKind { Space, Letter, Number, Other }

    private static CharKind KindAt(string text, int index, out int width)
    {
        // A lone surrogate is neither letter, number nor space (Rune reports it as U+FFFD, a symbol).
        Rune.DecodeFromUtf16(text.AsSpan(index), out Rune rune, out width);
        if (Rune.IsWhiteSpace(rune)) return CharKind.Space;
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharKind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharKind.Number,
            _ => CharKind.Other,
        };
    }

    /// <summary>Length (in UTF-16 units) of the run of <paramref name="kind"/> characters starting at <paramref name="start"/>.</summary>
    private static int RunLength(string text, int start, CharKind kind)
    {
        int i = start;
        while (i < text.Length && KindAt(text, i, out int width) == kind) i += width;
        return i - start;
    }

    /// <summary>Length of the first of <paramref name="literals"/> found at <paramref name="index"/>, ignoring case, or null.</summary>
    private static int? LiteralAt(string text, int index, string[] literals)
    {
        foreach (string literal in literals)
        {
            if (index + literal.Length > text.Length) continue;
            bool match = true;
            for (int k = 0; k < literal.Length && match; k++) match = SameIgnoringCase(text[index + k], literal[k]);
            if (match) return literal.Length;
        }
        return null;
    }

    /// <summary>
    /// Simple case folding for the ASCII literals above: their letters' only other case forms are the ASCII upper
    /// case and, for 's', 'ſ' (U+017F), which Python's case-insensitive matching also accepts.
    /// </summary>
    private static bool SameIgnoringCase(char c, char literal) =>
        char.ToLowerInvariant(c) == literal && c < 0x80 || c == '\u017F' && literal == 's';
}
