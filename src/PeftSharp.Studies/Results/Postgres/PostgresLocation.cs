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

    PostgresLocation(NpgsqlConnectionStringBuilder builder, string display, string? rawPassword = null)
    {
        ConnectionString = builder.ConnectionString;
        Display = display;
        Username = builder.Username;
        secrets = new[] { builder.Password, rawPassword }.Where(p => !string.IsNullOrEmpty(p)).Distinct().Cast<string>()
                                                          .OrderByDescending(p => p.Length).ToArray();
    }

    /// <summary>The password as given and as decoded: removed from any message that passes <see cref="Redact"/>.</summary>
    readonly string[] secrets;

    /// <summary><paramref name="message"/> with this location's password (and any URL or Password= one) removed.</summary>
    public string Redact(string message)
    {
        foreach (var secret in secrets) message = message.Replace(secret, "***", StringComparison.Ordinal);
        return RedactMessage(message);
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
        var parts = UrlParts.Split(url);
        string shown = parts.Display;
        var (host, port) = HostAndPort(parts.HostPort, shown);
        var builder = new NpgsqlConnectionStringBuilder { Host = host, Timeout = DefaultConnectTimeoutSeconds, ApplicationName = "peftsharp" };
        if (port is int p) builder.Port = p;
        string database = Uri.UnescapeDataString(parts.Path.TrimStart('/'));
        if (database.Length == 0) throw new PeftSharpException($"{shown}: the URL names no database, expected postgres://user@host:port/database");
        builder.Database = database;
        if (parts.User is { Length: > 0 } user) builder.Username = Uri.UnescapeDataString(user);
        if (parts.Password != null) builder.Password = Uri.UnescapeDataString(parts.Password);
        foreach (var pair in parts.Query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] kv = pair.Split('=', 2);
            string key = Uri.UnescapeDataString(kv[0]), value = kv.Length == 2 ? Uri.UnescapeDataString(kv[1]) : "";
            SetKeyword(builder, key is "sslmode" ? "SSL Mode" : key, value, shown);
        }
        return new PostgresLocation(builder, shown, parts.Password);
    }

    /// <summary>"host", "host:port" or "[v6::addr]:port"; a bad port or no host is an error naming the URL shown.</summary>
    static (string Host, int? Port) HostAndPort(string hostPort, string shown)
    {
        string host = hostPort, port = "";
        if (hostPort.StartsWith('['))
        {
            int close = hostPort.IndexOf(']');
            if (close < 0) throw NotAUrl(shown);
            host = hostPort[1..close];
            port = hostPort[(close + 1)..].TrimStart(':');
        }
        else if (hostPort.LastIndexOf(':') is var colon and >= 0)
        {
            host = hostPort[..colon];
            port = hostPort[(colon + 1)..];
        }
        host = Uri.UnescapeDataString(host);
        if (host.Length == 0) throw NotAUrl(shown);
        if (port.Length == 0) return (host, null);
        if (!int.TryParse(port, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int p) || p is < 1 or > 65535)
            throw new PeftSharpException($"{shown}: port '{port}' is not a number from 1 to 65535");
        return (host, p);
    }

    static PeftSharpException NotAUrl(string shown) =>
        new($"{shown}: not a PostgreSQL URL, expected postgres://user[:password]@host[:port]/database");

    /// <summary>
    /// A URL cut into its parts by hand, because a password may hold any character (Uri refuses or misreads '@', '/',
    /// '%'): scheme://[user[:password]@]host[:port][/database][?query]. The user info ends at the last '@' of the
    /// URL, so whatever precedes it is never shown but the user name (an '@' in a database name or query value must
    /// be written %40); the password is everything between the first ':' after the user and that '@'.
    /// </summary>
    sealed record UrlParts(string Scheme, string? User, string? Password, string HostPort, string Path, string Query)
    {
        /// <summary>The URL without its password: user@host... as given.</summary>
        public string Display => $"{Scheme}://{(User != null ? User + "@" : "")}{HostPort}{Path}{(Query.Length > 0 ? "?" + Query : "")}";

        public static UrlParts Split(string url)
        {
            int schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
            string scheme = url[..schemeEnd], rest = url[(schemeEnd + 3)..];
            int at = rest.LastIndexOf('@');
            string? user = null, password = null;
            if (at >= 0)
            {
                string info = rest[..at];
                int colon = info.IndexOf(':');
                user = colon < 0 ? info : info[..colon];
                password = colon < 0 ? null : info[(colon + 1)..];
                rest = rest[(at + 1)..];
            }
            int query = rest.IndexOf('?');
            string beforeQuery = query < 0 ? rest : rest[..query], queryText = query < 0 ? "" : rest[(query + 1)..];
            int slash = beforeQuery.IndexOf('/');
            return new UrlParts(scheme, user, password, slash < 0 ? beforeQuery : beforeQuery[..slash], slash < 0 ? "" : beforeQuery[slash..], queryText);
        }
    }

    static PostgresLocation FromConnectionString(string text)
    {
        NpgsqlConnectionStringBuilder builder;
        try { builder = new NpgsqlConnectionStringBuilder(text); }
        catch (ArgumentException e)
        {
            throw new PeftSharpException($"{RedactMessage(text)}: not a valid Npgsql connection string ({RedactMessage(e.Message)}), expected Host=…;Username=…;Database=…");
        }
        if (!text.Contains("timeout", StringComparison.OrdinalIgnoreCase)) builder.Timeout = DefaultConnectTimeoutSeconds;
        if (string.IsNullOrEmpty(builder.ApplicationName)) builder.ApplicationName = "peftsharp";
        var shown = new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Password = null };
        return new PostgresLocation(builder, shown.ConnectionString, builder.Password);
    }

    static void SetKeyword(NpgsqlConnectionStringBuilder builder, string key, string value, string shown)
    {
        try { builder[key] = value; }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            throw new PeftSharpException($"{shown}: URL option '{key}' is not an Npgsql connection setting or has a bad value");
        }
    }

    /// <summary>A URL with its password removed (user@host stays, so people see whom it connects as), whatever
    /// characters the password holds.</summary>
    public static string RedactUrl(string url)
    {
        var match = UrlScheme().Match(url);
        if (!match.Success) return RedactMessage(url);
        return url[..match.Index] + UrlParts.Split(url[match.Index..].TrimStart()).Display;
    }

    /// <summary>Any text with passwords removed: a whole postgres URL's, URLs' user:password@ inside it and
    /// connection strings' Password=…; (quoted values included).</summary>
    public static string RedactMessage(string text)
    {
        string trimmed = text.Trim();
        if (UrlScheme().IsMatch(trimmed) && !trimmed.Any(char.IsWhiteSpace)) return UrlParts.Split(trimmed).Display;
        return PasswordKeyword().Replace(UrlPassword().Replace(text, "$1@"), "$1=***");
    }

    [GeneratedRegex(@"^\s*postgres(ql)?://", RegexOptions.IgnoreCase)]
    private static partial Regex UrlScheme();

    [GeneratedRegex(@"(^|;)\s*(host|server)\s*=", RegexOptions.IgnoreCase)]
    private static partial Regex ConnectionStringHost();

    // Inside free text: scheme://user:password@ → scheme://user@ (greedy: up to the last @ before white space).
    [GeneratedRegex(@"(postgres(?:ql)?://[^:/@\s]*):\S*@", RegexOptions.IgnoreCase)]
    private static partial Regex UrlPassword();

    [GeneratedRegex(@"(?i)\b(password|pwd)\s*=\s*(""(?:[^""]|"""")*""|'(?:[^']|'')*'|[^;]*)")]
    private static partial Regex PasswordKeyword();
}
