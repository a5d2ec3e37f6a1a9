using PeftSharp.Results.Postgres;

namespace PeftSharp.Results;

/// <summary>Opens the results store a <c>--db</c> argument names.</summary>
public static class ResultsStores
{
    /// <summary>
    /// <c>postgres://…</c>, <c>postgresql://…</c> or an Npgsql connection string (<c>Host=…;…</c>) opens PostgreSQL;
    /// anything else is the path of a SQLite file (the embedded default).
    /// </summary>
    public static SqlResultsStore Open(string dbArgument)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dbArgument);
        return IsPostgres(dbArgument) ? PostgresResultsStore.Open(dbArgument) : ResultsDb.Open(dbArgument);
    }

    public static bool IsPostgres(string dbArgument) => PostgresLocation.Matches(dbArgument);

    /// <summary>The argument as it may be shown: a path as given, a database without its password.</summary>
    public static string Describe(string dbArgument) =>
        IsPostgres(dbArgument) ? PostgresLocation.RedactMessage(dbArgument) : dbArgument;
}
