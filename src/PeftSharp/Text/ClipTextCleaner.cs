using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace PeftSharp.Text;

/// <summary>
/// open_clip's text cleaning for its default ("lower") tokenizer: <c>ftfy.fix_text</c>, <c>html.unescape</c> twice,
/// whitespace folded to single spaces and stripped, then Python's <c>str.lower()</c>.
/// </summary>
/// <remarks>
/// ftfy has no .NET port, so only its deterministic fixes that captions commonly need are reproduced: its first
/// HTML-entity pass (semicolon-terminated references, skipped when the text contains '&lt;'), curly quotes made
/// straight (which also lets "it’s" split into the "'s" contraction) and Unicode NFC. Not reproduced: mojibake
/// repair (e.g. "cafÃ©" → "café"), latin ligatures ("ﬁ" → "fi"), full-width characters, control-character removal,
/// line-break normalisation and ftfy's upper-case entity names ("&amp;EACUTE;"); such text tokenizes as written.
/// HTML unescaping follows Python's <c>html.unescape</c> rules (numeric references, Windows-1252 fix-ups, the
/// semicolon-less legacy names) for the HTML 4 entity names; the ~2000 names HTML 5 added (e.g. "&amp;bigstar;") are
/// left as written.
/// </remarks>
internal static class ClipTextCleaner
{
    internal static string Clean(string text)
    {
        string fixedText = FixTextSubset(text);
        string unescaped = HtmlUnescape(HtmlUnescape(fixedText));
        return PythonLower(FoldWhitespace(unescaped));
    }

    /// <summary>The part of ftfy.fix_text this port does, in ftfy's order: unescape entities, uncurl quotes, NFC.</summary>
    internal static string FixTextSubset(string text)
    {
        string straightened = UncurlQuotes(FtfyUnescapeHtml(text));
        // Normalize throws on lone surrogates; Python would fail on those later anyway, so keep such text as is.
        return HasLoneSurrogate(straightened) || straightened.IsNormalized(NormalizationForm.FormC)
            ? straightened
            : straightened.Normalize(NormalizationForm.FormC);
    }

    // ftfy decodes only complete, semicolon-terminated references, and leaves text that looks like HTML markup alone.
    private static readonly Regex FtfyEntity = new(@"&#?[0-9A-Za-z]{1,24};", RegexOptions.Compiled | RegexOptions.CultureInvariant);

    private static string FtfyUnescapeHtml(string text)
    {
        if (!text.Contains('&') || text.Contains('<')) return text;
        return FtfyEntity.Replace(text, m =>
        {
            string reference = m.Value;
            if (reference[1] != '#') return Entities.TryGetValue(reference[1..], out string? value) ? value : reference;
            // A numeric reference counts only when it is consumed whole, semicolon included.
            string unescaped = HtmlUnescape(reference);
            return unescaped.Contains(';') ? reference : unescaped;
        });
    }

    /// <summary>ftfy's uncurl_quotes, with its exact character sets.</summary>
    private static string UncurlQuotes(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            sb.Append(c switch
            {
                '\u02BC' or (>= '\u2018' and <= '\u201B') => '\'',
                >= '\u201C' and <= '\u201F' => '"',
                _ => c,
            });
        }
        return sb.ToString();
    }

    /// <summary>
    /// Python's strip(), then regex's \s+ → ' ', then strip() again: runs of Unicode White_Space inside become one
    /// space, and the ends lose whitespace plus U+001C-U+001F, which str.isspace() also counts but regex's \s does not.
    /// </summary>
    internal static string FoldWhitespace(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool pendingSpace = false;
        foreach (char c in text.AsSpan().Trim(PythonStripChars))
        {
            if (char.IsWhiteSpace(c))
            {
                pendingSpace = true;
                continue;
            }
            if (pendingSpace) sb.Append(' ');
            pendingSpace = false;
            sb.Append(c);
        }
        return sb.ToString();
    }

    private static readonly char[] PythonStripChars = Enumerable.Range(0, 0x10000)
        .Where(c => char.IsWhiteSpace((char)c) || c is >= 0x1C and <= 0x1F).Select(c => (char)c).ToArray();

    // ---- html.unescape -------------------------------------------------------------------------------------------

    // Python's html.unescape pattern: decimal, hexadecimal or named reference, the semicolon optional.
    private static readonly Regex CharRef = new(@"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)",
        RegexOptions.Compiled | RegexOptions.CultureInvariant);

    internal static string HtmlUnescape(string text) =>
        text.Contains('&') ? CharRef.Replace(text, m => ReplaceCharRef(m.Groups[1].Value)) : text;

    private static string ReplaceCharRef(string reference) =>
        reference[0] == '#' ? ReplaceNumericRef(reference) : ReplaceNamedRef(reference);

    private static string ReplaceNumericRef(string reference)
    {
        bool hex = reference[1] is 'x' or 'X';
        string digits = reference[(hex ? 2 : 1)..].TrimEnd(';');
        // Values too large for a long are beyond U+10FFFF anyway.
        long code = long.TryParse(digits, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None,
            CultureInfo.InvariantCulture, out long parsed) ? parsed : long.MaxValue;

        if (code == 0) return "\uFFFD";
        if (code == 0x0D) return "\r";
        // Browsers read C1 references as Windows-1252; the five bytes it leaves undefined stay as they are.
        if (code is >= 0x80 and <= 0x9F) return Windows1252C1[(int)code - 0x80].ToString();
        if (code is >= 0xD800 and <= 0xDFFF or > 0x10FFFF) return "\uFFFD";
        if (IsInvalidCodePoint(code)) return "";
        return char.ConvertFromUtf32((int)code);
    }

    private const string Windows1252C1 =
        "\u20AC\u0081\u201A\u0192\u201E\u2026\u2020\u2021\u02C6\u2030\u0160\u2039\u0152\u008D\u017D\u008F" +
        "\u0090\u2018\u2019\u201C\u201D\u2022\u2013\u2014\u02DC\u2122\u0161\u203A\u0153\u009D\u017E\u0178";

    // Controls, noncharacters and the like that Python's html.unescape drops.
    private static bool IsInvalidCodePoint(long code) =>
        code is >= 0x01 and <= 0x08 or 0x0B or >= 0x0E and <= 0x1F or >= 0x7F and <= 0x9F or >= 0xFDD0 and <= 0xFDEF
        || (code & 0xFFFE) == 0xFFFE;

    /// <summary>Exact name first; otherwise the longest prefix that is a semicolon-less legacy name ("&amp;ampx" → "&amp;x").</summary>
    private static string ReplaceNamedRef(string reference)
    {
        if (Entities.TryGetValue(reference, out string? value)) return value;
        for (int length = reference.Length - 1; length > 1; length--)
        {
            if (Entities.TryGetValue(reference[..length], out value)) return value + reference[length..];
        }
        return "&" + reference;
    }

    // HTML 4 names (with HTML 5's values), plus "apos" and HTML 5's upper-case aliases. A name written without ';'
    // is also recognised without one, as in Python's html5 table; values are hexadecimal code points.
    private const string EntityTable =
        "Aacute=c1 aacute=e1 Acirc=c2 acirc=e2 acute=b4 AElig=c6 aelig=e6 Agrave=c0 agrave=e0 alefsym;=2135 Alpha;=391 " +
        "alpha;=3b1 AMP=26 amp=26 and;=2227 ang;=2220 apos;=27 Aring=c5 aring=e5 asymp;=2248 Atilde=c3 atilde=e3 " +
        "Auml=c4 auml=e4 bdquo;=201e Beta;=392 beta;=3b2 brvbar=a6 bull;=2022 cap;=2229 Ccedil=c7 ccedil=e7 cedil=b8 " +
        "cent=a2 Chi;=3a7 chi;=3c7 circ;=2c6 clubs;=2663 cong;=2245 COPY=a9 copy=a9 crarr;=21b5 cup;=222a curren=a4 " +
        "Dagger;=2021 dagger;=2020 dArr;=21d3 darr;=2193 deg=b0 Delta;=394 delta;=3b4 diams;=2666 divide=f7 Eacute=c9 " +
        "eacute=e9 Ecirc=ca ecirc=ea Egrave=c8 egrave=e8 empty;=2205 emsp;=2003 ensp;=2002 Epsilon;=395 epsilon;=3b5 " +
        "equiv;=2261 Eta;=397 eta;=3b7 ETH=d0 eth=f0 Euml=cb euml=eb euro;=20ac exist;=2203 fnof;=192 forall;=2200 " +
        "frac12=bd frac14=bc frac34=be frasl;=2044 Gamma;=393 gamma;=3b3 ge;=2265 GT=3e gt=3e hArr;=21d4 harr;=2194 " +
        "hearts;=2665 hellip;=2026 Iacute=cd iacute=ed Icirc=ce icirc=ee iexcl=a1 Igrave=cc igrave=ec image;=2111 " +
        "infin;=221e int;=222b Iota;=399 iota;=3b9 iquest=bf isin;=2208 Iuml=cf iuml=ef Kappa;=39a kappa;=3ba " +
        "Lambda;=39b lambda;=3bb lang;=27e8 laquo=ab lArr;=21d0 larr;=2190 lceil;=2308 ldquo;=201c le;=2264 " +
        "lfloor;=230a lowast;=2217 loz;=25ca lrm;=200e lsaquo;=2039 lsquo;=2018 LT=3c lt=3c macr=af mdash;=2014 " +
        "micro=b5 middot=b7 minus;=2212 Mu;=39c mu;=3bc nabla;=2207 nbsp=a0 ndash;=2013 ne;=2260 ni;=220b not=ac " +
        "notin;=2209 nsub;=2284 Ntilde=d1 ntilde=f1 Nu;=39d nu;=3bd Oacute=d3 oacute=f3 Ocirc=d4 ocirc=f4 OElig;=152 " +
        "oelig;=153 Ograve=d2 ograve=f2 oline;=203e Omega;=3a9 omega;=3c9 Omicron;=39f omicron;=3bf oplus;=2295 " +
        "or;=2228 ordf=aa ordm=ba Oslash=d8 oslash=f8 Otilde=d5 otilde=f5 otimes;=2297 Ouml=d6 ouml=f6 para=b6 " +
        "part;=2202 permil;=2030 perp;=22a5 Phi;=3a6 phi;=3c6 Pi;=3a0 pi;=3c0 piv;=3d6 plusmn=b1 pound=a3 Prime;=2033 " +
        "prime;=2032 prod;=220f prop;=221d Psi;=3a8 psi;=3c8 QUOT=22 quot=22 radic;=221a rang;=27e9 raquo=bb rArr;=21d2 " +
        "rarr;=2192 rceil;=2309 rdquo;=201d real;=211c REG=ae reg=ae rfloor;=230b Rho;=3a1 rho;=3c1 rlm;=200f " +
        "rsaquo;=203a rsquo;=2019 sbquo;=201a Scaron;=160 scaron;=161 sdot;=22c5 sect=a7 shy=ad Sigma;=3a3 sigma;=3c3 " +
        "sigmaf;=3c2 sim;=223c spades;=2660 sub;=2282 sube;=2286 sum;=2211 sup;=2283 sup1=b9 sup2=b2 sup3=b3 supe;=2287 " +
        "szlig=df Tau;=3a4 tau;=3c4 there4;=2234 Theta;=398 theta;=3b8 thetasym;=3d1 thinsp;=2009 THORN=de thorn=fe " +
        "tilde;=2dc times=d7 trade;=2122 Uacute=da uacute=fa uArr;=21d1 uarr;=2191 Ucirc=db ucirc=fb Ugrave=d9 " +
        "ugrave=f9 uml=a8 upsih;=3d2 Upsilon;=3a5 upsilon;=3c5 Uuml=dc uuml=fc weierp;=2118 Xi;=39e xi;=3be Yacute=dd " +
        "yacute=fd yen=a5 Yuml;=178 yuml=ff Zeta;=396 zeta;=3b6 zwj;=200d zwnj;=200c";
    private static readonly Dictionary<string, string> Entities = ParseEntityTable();

    private static Dictionary<string, string> ParseEntityTable()
    {
        var entities = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string entry in EntityTable.Split(' '))
        {
            int eq = entry.IndexOf('=');
            string name = entry[..eq].TrimEnd(';');
            string value = char.ConvertFromUtf32(int.Parse(entry[(eq + 1)..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
            entities[name + ";"] = value;
            if (!entry[..eq].EndsWith(';')) entities[name] = value;
        }
        return entities;
    }

    // ---- str.lower ---------------------------------------------------------------------------------------------

    /// <summary>
    /// Python's str.lower(): simple lower-case mappings, except 'İ' → "i̇" (full mapping) and a capital sigma at
    /// the end of a word → 'ς'. Lone surrogates become U+FFFD (UTF-8 encoding would do that later anyway).
    /// </summary>
    internal static string PythonLower(string text)
    {
        Rune[] runes = text.EnumerateRunes().ToArray();
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < runes.Length; i++)
        {
            switch (runes[i].Value)
            {
                case 0x0130: sb.Append("i\u0307"); break;
                case 0x03A3: sb.Append(IsFinalSigma(runes, i) ? 'ς' : 'σ'); break;
                default: sb.Append(Rune.ToLowerInvariant(runes[i]).ToString()); break;
            }
        }
        return sb.ToString();
    }

    /// <summary>Unicode's Final_Sigma: a cased letter before (skipping case-ignorables) and none after.</summary>
    private static bool IsFinalSigma(Rune[] runes, int index)
    {
        int before = index - 1;
        while (before >= 0 && IsCaseIgnorable(runes[before])) before--;
        if (before < 0 || !IsCased(runes[before])) return false;
        int after = index + 1;
        while (after < runes.Length && IsCaseIgnorable(runes[after])) after++;
        return after == runes.Length || !IsCased(runes[after]);
    }

    // Approximates Unicode's Cased property by the cased letter categories (it also has e.g. 'ª' and Roman numerals).
    private static bool IsCased(Rune rune) => Rune.GetUnicodeCategory(rune) is
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    // Unicode's Case_Ignorable: marks, format characters, modifiers and the word-internal punctuation of Word_Break.
    private static bool IsCaseIgnorable(Rune rune) =>
        Rune.GetUnicodeCategory(rune) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol
        || rune.Value is '\'' or '.' or ':' or 0x00B7 or 0x0387 or 0x05F4 or 0x2018 or 0x2019 or 0x2024 or 0x2027
            or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A;

    private static bool HasLoneSurrogate(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
            else if (char.IsSurrogate(text[i])) return true;
        }
        return false;
    }
}
