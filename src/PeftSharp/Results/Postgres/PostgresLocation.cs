using System.Text.RegularExpressions;
using Npgsql;

namespace PeftSharp.Results.Postgres;

/// <summary>
/// A PostgreSQL database as <c>--db</c> names it: a URL <c>postgres://user:pass@host:port/db?key=value</c> (query
/// keys are Npgsql connection-string keywords, e.g. <c>sslmode=require</c>) or an Npgsql connection string
/// <c>Host=…;Username=…;Password=…;Database=…</c>. <see cref="Display"/> is the same without the password: the only
/// form that goes into messages and logs. A password may also come from PGPASSWORD or ~/.pgpass (Npgsql reads both),
/// which keeps it off command lines and out of job scripts.
/// </summary>
public sealed partial class PostgresLocation
{
    /// <summary>How long opening a connection may take before the server counts as unreachable.</summary>
    const int DefaultConnectTimeoutSeconds = 10;

    PostgresLocation(NpgsqlConnectionStringBuilder builder, string display)
    {
        ConnectionString = builder.ConnectionString;
        Display = display;
        Username = builder.Username;
    }

    /// <summary>The full connection string, password included: never print it.</summary>
    internal string ConnectionString { get; }

    /// <summary>The database without its password.</summary>
    public string Display { get; }

    public string? Username { get; }

    public override string ToString() => Display;

    /// <summary>True when <paramref name="dbArgument"/> names a PostgreSQL database rather than a SQLite file.</summary>
    public static bool Matches(string dbArgument) => UrlScheme().IsMatch(dbArgument) || ConnectionStringHost().IsMatch(dbArgument);

    public static PostgresLocation Parse(string dbArgument)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dbArgument);
        return UrlScheme().IsMatch(dbArgument) ? FromUrl(dbArgument.Trim()) : FromConnectionString(dbArgument);
    }

    static PostgresLocation FromUrl(string url)
    {
        string shown = RedactUrl(url);
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
            throw new PeftSharpException($"--db {shown}: not a PostgreSQL URL, expected postgres://user[:password]@host[:port]/database");
        var builder = new NpgsqlConnectionStringBuilder { Host = uri.Host, Timeout = DefaultConnectTimeoutSeconds, ApplicationName = "peftsharp" };
        if (uri.Port > 0) builder.Port = uri.Port;
        string database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (database.Length == 0) throw new PeftSharpException($"--db {shown}: the URL names no database, expected postgres://user@host:port/database");
        builder.Database = database;
        if (uri.UserInfo.Length > 0)
        {
            string[] parts = uri.UserInfo.Split(':', 2);
            builder.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2) builder.Password = Uri.UnescapeDataString(parts[1]);
        }
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] kv = pair.Split('=', 2);
            string key = Uri.UnescapeDataString(kv[0]), value = kv.Length == 2 ? Uri.UnescapeDataString(kv[1]) : "";
            SetKeyword(builder, key is "sslmode" ? "SSL Mode" : key, value, shown);
        }
        return new PostgresLocation(builder, shown);
    }

    static PostgresLocation FromConnectionString(string text)
    {
        NpgsqlConnectionStringBuilder builder;
        try { builder = new NpgsqlConnectionStringBuilder(text); }
        catch (ArgumentException e)
        {
            throw new PeftSharpException($"--db: not a valid Npgsql connection string ({RedactMessage(e.Message)}), expected Host=…;Username=…;Database=…");
        }
        if (!text.Contains("timeout", StringComparison.OrdinalIgnoreCase)) builder.Timeout = DefaultConnectTimeoutSeconds;
        if (string.IsNullOrEmpty(builder.ApplicationName)) builder.ApplicationName = "peftsharp";
        var shown = new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Password = null };
        return new PostgresLocation(builder, shown.ConnectionString);
    }

    static void SetKeyword(NpgsqlConnectionStringBuilder builder, string key, string value, string shown)
    {
        try { builder[key] = value; }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            throw new PeftSharpException($"--db {shown}: URL option '{key}' is not an Npgsql connection setting or has a bad value");
        }
    }

    /// <summary>A URL with any password replaced by nothing (user@host stays, so people see whom it connects as).</summary>
    public static string RedactUrl(string url) => UrlPassword().Replace(url, "$1@");

    /// <summary>Any text with passwords removed: URLs' user:password@ and connection strings' Password=…;.</summary>
    public static string RedactMessage(string text) => PasswordKeyword().Replace(UrlPassword().Replace(text, "$1@"), "Password=***");

    [GeneratedRegex(@"^\s*postgres(ql)?://", RegexOptions.IgnoreCase)]
    private static partial Regex UrlScheme();

    [GeneratedRegex(@"(^|;)\s*(host|server)\s*=", RegexOptions.IgnoreCase)]
    private static partial Regex ConnectionStringHost();

    // scheme://user:password@ → scheme://user@ (the password ends at the last @ before the host).
    [GeneratedRegex(@"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", RegexOptions.IgnoreCase)]
    private static partial Regex UrlPassword();

    [GeneratedRegex(@"(?i)\b(password|pwd)\s*=\s*[^;]*")]
    private static partial Regex PasswordKeyword();
}
