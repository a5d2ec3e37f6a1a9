using PeftSharp.Tuners.Methods;

namespace PeftSharp.Tuners;

/// <summary>Every method by the id users type; composition with '+' ("ssf+lora"). Adding a method is its file and a
/// line below (or <see cref="Register"/> from outside the library): everything else — `methods`, the bench grids, the
/// capacity study, adapter files, merging — reads what the method declares.</summary>
public static class TunerRegistry
{
    static readonly object gate = new();
    static readonly List<TunerMethod> methods = new()
    {
        new LinearProbe(), new FullFineTuning(), new PartialK(),
        new VptShallow(), new VptDeep(),
        new BitFit(), new LayerNormTuning(), new DiffFit(), new Ssf(),
        new PfeifferAdapter(), new HoulsbyAdapter(), new AdaptFormer(), new ConvPass(), new RepAdapter(),
        new Lora(), new Dora(), new FactTt(), new FactTk(), new PrefixTuning(),
        new Sct(), new Gps(), new Vqt(),
        new Dtl(), new AdapterPlus(), new Hydra(), new Mona(), new DesignSpaceAdapter(),
        new SptLora(), new SptAdapter(), new Noah(), new Last(),
        new StAdapter(), new Bapat(),
    };

    /// <summary>The registered methods, in registration order.</summary>
    public static IReadOnlyList<TunerMethod> All
    {
        get { lock (gate) return methods.ToArray(); }
    }

    /// <summary>Adds a method of the caller's (a plug-in, a test) under its id until the returned handle is disposed.</summary>
    public static IDisposable Register(TunerMethod method)
    {
        string id = method.Id;
        if (string.IsNullOrWhiteSpace(id) || id != id.Trim().ToLowerInvariant() || id.Contains('+') || id.Contains('.'))
            throw new PeftSharpException($"method id '{id}': expected a lower-case name without '+' or '.'");
        lock (gate)
        {
            if (methods.Any(m => m.Id == id)) throw new PeftSharpException($"method '{id}' is already registered");
            methods.Add(method);
        }
        return new Registration(method);
    }

    sealed class Registration(TunerMethod method) : IDisposable
    {
        public void Dispose()
        {
            lock (gate) methods.Remove(method);
        }
    }

    /// <summary>The methods that apply to image encoders (all but the video-only ones).</summary>
    public static IReadOnlyList<TunerMethod> ImageMethods => All.Where(m => !m.VideoOnly).ToList();

    /// <summary>The sixteen methods of the unifying study (Mai et al., CVPR 2025), in its table order.</summary>
    public static readonly IReadOnlyList<string> StudyMethods = new[]
    {
        "linear", "full", "vpt-shallow", "vpt-deep", "bitfit", "layernorm", "difffit", "ssf", "adapter-pfeiffer",
        "adapter-houlsby", "adaptformer", "convpass", "repadapter", "lora", "fact-tt", "fact-tk",
    };

    /// <summary>Whether a method spec is a PEFT method (no part of it a baseline: linear probe, full fine-tuning).</summary>
    public static bool IsPeft(string spec) => Parse(spec).All(m => m.IsPeft);

    public static TunerMethod Get(string id) =>
        All.FirstOrDefault(m => m.Id == id.Trim().ToLowerInvariant())
        ?? throw new PeftSharpException($"unknown method '{id}' (known: {string.Join(", ", All.Select(m => m.Id))})");

    public static List<TunerMethod> Parse(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec)) throw new PeftSharpException("method", "no method given (e.g. lora, or ssf+lora)");
        var methods = spec.Split('+', StringSplitOptions.TrimEntries).Select(Get).ToList();
        var repeated = methods.GroupBy(m => m.Id).FirstOrDefault(g => g.Count() > 1);
        if (repeated != null) throw new PeftSharpException($"method '{repeated.Key}' appears twice in '{spec}'");
        return methods;
    }

    /// <summary>
    /// Splits "name=value" settings between methods: "lora.rank" goes to lora; a plain "rank" to every method in the
    /// spec that declares it. A setting no method declares is an error naming the methods and their hyperparameters.
    /// </summary>
    public static Dictionary<TunerMethod, Dictionary<string, string>> RouteSettings(
        IReadOnlyList<TunerMethod> methods, IReadOnlyDictionary<string, string> settings)
    {
        var routed = methods.ToDictionary(m => m, _ => new Dictionary<string, string>());
        foreach (var (key, value) in settings)
        {
            int dot = key.IndexOf('.');
            if (dot > 0)
            {
                var method = methods.FirstOrDefault(m => m.Id == key[..dot])
                    ?? throw new PeftSharpException($"setting '{key}': method '{key[..dot]}' is not among {string.Join("+", methods.Select(m => m.Id))}");
                routed[method][key[(dot + 1)..]] = value;
                continue;
            }
            var takers = methods.Where(m => m.Hypers.Any(h => h.Name == key)).ToList();
            if (takers.Count == 0)
                throw new PeftSharpException($"unknown hyperparameter '{key}' for {string.Join("+", methods.Select(m => m.Id))} (known: {string.Join(", ", methods.SelectMany(m => m.Hypers.Select(h => h.Name)).Distinct().DefaultIfEmpty("none"))})");
            foreach (var m in takers) routed[m][key] = value;
        }
        return routed;
    }

    /// <summary>The full hyperparameters (defaults filled in) each method of a spec would get, as
    /// {"method": {"name": value}} JSON, without building a model; validates everything.</summary>
    public static System.Text.Json.Nodes.JsonObject ResolveHypers(string spec, IReadOnlyDictionary<string, string> settings)
    {
        var methods = Parse(spec);
        var routed = RouteSettings(methods, settings);
        var result = new System.Text.Json.Nodes.JsonObject();
        foreach (var m in methods) result[m.Id] = Hyperparameters.Create(m.Id, m.Hypers, routed[m]).ToJson();
        return result;
    }

    /// <summary>Parses "key=value" strings (the CLI's repeated --set).</summary>
    public static Dictionary<string, string> ParseSettings(IEnumerable<string> sets)
    {
        var result = new Dictionary<string, string>();
        foreach (var s in sets)
        {
            int eq = s.IndexOf('=');
            if (eq <= 0) throw new PeftSharpException("set", $"setting '{s}': expected key=value (e.g. rank=8)");
            result[s[..eq].Trim()] = s[(eq + 1)..].Trim();
        }
        return result;
    }
}
