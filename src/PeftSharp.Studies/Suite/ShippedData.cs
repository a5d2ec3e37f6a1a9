using System.Globalization;
using System.Reflection;
using System.Text;
using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>
/// A subset of real images shipped in data/suite as a pair of files: "&lt;name&gt;.png", a sheet of equal cells laid
/// out row by row, and "&lt;name&gt;.tsv", one line per cell (split, label, source) after a header line. The files are
/// also embedded in the library, so a fresh clone materialises the suite without the Debian packages.
/// </summary>
internal sealed record ShippedSubset(string Name, int CellWidth, int CellHeight, bool Gray, int Columns,
    string[] Splits, int[] Labels, string[] Sources, byte[][] Cells)
{
    public const string TrainVal = "trainval", Test = "test", All = "all";
    public int Count => Cells.Length;
    public int Channels => Gray ? 1 : 3;

    /// <summary>Indices of the cells of one split, in file order.</summary>
    public int[] Indices(string split) => Enumerable.Range(0, Count).Where(i => Splits[i] == split).ToArray();
}

/// <summary>The layout of one shipped subset (cell size, colour, sheet width).</summary>
internal sealed record SubsetLayout(string Name, int CellWidth, int CellHeight, bool Gray, int Columns);

internal static class ShippedData
{
    const string ResourcePrefix = "PeftSharp.Suite.Data.";
    const string Header = "split\tlabel\tsource";

    /// <summary>Reads a subset from <paramref name="dataDir"/>, or from the library's embedded copy when it is null.</summary>
    public static ShippedSubset Load(SubsetLayout layout, string? dataDir)
    {
        using var sheetStream = Open(layout.Name + ".png", dataDir);
        using var tableStream = Open(layout.Name + ".tsv", dataDir);
        string where = dataDir == null ? $"embedded {layout.Name}.png" : Path.Combine(dataDir, layout.Name + ".png");
        if (!ImageDecoder.TryDecode(sheetStream, out var sheet, out string? error))
            throw new PeftSharpException($"{where}: {error}");
        var rows = ReadTable(tableStream, where);

        int rowsNeeded = (rows.Count + layout.Columns - 1) / layout.Columns;
        if (sheet!.Width != layout.Columns * layout.CellWidth || sheet.Height != rowsNeeded * layout.CellHeight)
            throw new PeftSharpException($"{where}: sheet is {sheet.Width}×{sheet.Height}; expected " +
                $"{layout.Columns * layout.CellWidth}×{rowsNeeded * layout.CellHeight} for {rows.Count} cells of {layout.CellWidth}×{layout.CellHeight}");
        var cells = Enumerable.Range(0, rows.Count).Select(i => CutCell(sheet, layout, i)).ToArray();
        return new ShippedSubset(layout.Name, layout.CellWidth, layout.CellHeight, layout.Gray, layout.Columns,
            rows.Select(r => r.Split).ToArray(), rows.Select(r => r.Label).ToArray(), rows.Select(r => r.Source).ToArray(), cells);
    }

    /// <summary>Writes the sheet and the table of a subset into <paramref name="dataDir"/>.</summary>
    public static void Save(ShippedSubset subset, string dataDir)
    {
        Directory.CreateDirectory(dataDir);
        int rows = (subset.Count + subset.Columns - 1) / subset.Columns;
        int width = subset.Columns * subset.CellWidth, height = rows * subset.CellHeight, channels = subset.Channels;
        var sheet = new byte[width * height * channels];
        for (int i = 0; i < subset.Count; i++)
        {
            int left = i % subset.Columns * subset.CellWidth, top = i / subset.Columns * subset.CellHeight;
            for (int y = 0; y < subset.CellHeight; y++)
                Array.Copy(subset.Cells[i], y * subset.CellWidth * channels, sheet, ((top + y) * width + left) * channels, subset.CellWidth * channels);
        }
        File.WriteAllBytes(Path.Combine(dataDir, subset.Name + ".png"), new SuiteImage(width, height, subset.Gray, sheet).ToPng());

        var table = new StringBuilder(Header).Append('\n');
        for (int i = 0; i < subset.Count; i++)
            table.Append(CultureInfo.InvariantCulture, $"{subset.Splits[i]}\t{subset.Labels[i]}\t{subset.Sources[i]}\n");
        File.WriteAllText(Path.Combine(dataDir, subset.Name + ".tsv"), table.ToString());
    }

    static Stream Open(string file, string? dataDir)
    {
        if (dataDir != null)
        {
            string path = Path.Combine(dataDir, file);
            if (!File.Exists(path))
                throw new PeftSharpException($"{path}: shipped suite file not found; expected the data/suite folder of the repository " +
                    "(rebuild it with 'peftsharp suite build')");
            return File.OpenRead(path);
        }
        return Assembly.GetExecutingAssembly().GetManifestResourceStream(ResourcePrefix + file)
            ?? throw new InvalidOperationException($"the library was built without the embedded suite file {file} (data/suite/{file})");
    }

    static List<(string Split, int Label, string Source)> ReadTable(Stream stream, string where)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string? header = reader.ReadLine();
        if (header != Header) throw new PeftSharpException($"{where}: table header is '{header}'; expected '{Header.Replace("\t", "<tab>")}'");
        var rows = new List<(string, int, string)>();
        int lineNumber = 1;
        for (string? line = reader.ReadLine(); line != null; line = reader.ReadLine())
        {
            lineNumber++;
            if (line.Length == 0) continue;
            var parts = line.Split('\t');
            if (parts.Length != 3 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int label))
                throw new PeftSharpException($"{where} table line {lineNumber}: '{line}'; expected 'split<tab>label<tab>source'");
            rows.Add((parts[0], label, parts[2]));
        }
        return rows;
    }

    /// <summary>Cell i of a decoded sheet: one channel for gray subsets (the decoder repeats gray into R, G and B).</summary>
    static byte[] CutCell(RgbImage sheet, SubsetLayout layout, int index)
    {
        int channels = layout.Gray ? 1 : 3;
        var cell = new byte[layout.CellWidth * layout.CellHeight * channels];
        int left = index % layout.Columns * layout.CellWidth, top = index / layout.Columns * layout.CellHeight;
        for (int y = 0; y < layout.CellHeight; y++)
            for (int x = 0; x < layout.CellWidth; x++)
                for (int c = 0; c < channels; c++)
                    cell[(y * layout.CellWidth + x) * channels + c] = sheet.Pixels[((top + y) * sheet.Width + left + x) * 3 + c];
        return cell;
    }
}
