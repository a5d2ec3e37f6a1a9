using PeftSharp.Interop;
using System.Text.Json;
using PeftSharp.Benchmarks;
using PeftSharp.Models;
using PeftSharp.Tuners;

namespace PeftSharp.Cli.Commands;

/// <summary>Throughput and memory per method: the speed claims of the README are measured here.</summary>
public sealed class PerfCommand : ICommand
{
    public string Name => "perf";
    public string Summary => "measure training/inference images/s, merged vs bare, peak memory, per method";
    public IEnumerable<string> Flags => new[] { "help", "json", "in-process", "no-baseline", "profile", "grad-checkpointing", "paired", "onnx" };
    public string Usage => """
        peftsharp perf [--model PRESET | --config JSON] [--methods linear,full,lora,...] [--batch 64] [--steps 6]
                       [--warmup 2] [--threads N] [--device cpu|cuda] [--precision fp32|bf16|auto] [--json]
                       [--in-process] [--profile] [--grad-checkpointing] [--paired] [--set key=value ...]
        peftsharp perf --gemm N [--threads N]
          --gemm N measures only the machine's GEMM rate: an N×N·N×N product in float32 and bfloat16 (GFLOP/s,
          printed as JSON), the ceiling scripts/peer-compare.sh reads each figure against.
          Default shape: ViT-Tiny (192 wide, 12 blocks, 3 heads) at 32 px with 4-px patches, batch 64, 10 classes.
          Ratios (method vs full fine-tuning, merged vs bare backbone) are the figures to compare across machines.
          Each method runs in a fresh child process (its own peak RSS, no allocator state carried over) unless
          --in-process is given. --paired times each method's training steps alternately with full fine-tuning's
          in the same process and reports "vs full" from those pairs (robust to a machine whose speed drifts;
          about twice the time). --profile also times the phases of a training step (zero_grad, forward,
          backward, optimizer, freeing the step's tensors and garbage) and reports their medians. --set applies a
          hyperparameter to each method that has it (dropout=0 matches a peer LoRA without dropout).
          --precision bf16 trains and infers under libtorch's bfloat16 autocast (fast on CPUs with AVX-512 BF16
          or AMX; PyTorch's torch.autocast("cpu") is the peer of it); auto times both for the model's largest
          product on this CPU and measures the faster (the report's "precision" is the one used). --grad-checkpointing trains with checkpointed
          blocks (activations recomputed in the backward). "train mem" is the peak resident memory of the first two
          training steps less the resident memory before them (runtime, libtorch, model, batch); "saved" is what
          a training forward leaves allocated for the backward (native heap bytes in use, without the freed blocks
          the heap keeps, so it does not move with fragmentation as the resident figure does).
        peftsharp perf --multi-adapter N [--methods lora,dora] [--model ...] [--batch 64] [--steps 6] [--set key=value ...]
          Many adapters on one backbone: N adapters (the methods in turn) with their own heads, one mixed batch whose
          examples go to the tasks in turn, against one merged model per task running its own examples; timed
          alternately in one process, the ratio is the figure to compare.
        peftsharp perf --onnx [--methods lora] [--model ...] [--batch 64] [--steps 6] [--threads N]
          Deployment: the same merged ViT (the method applied with a random update, then merged) run by PeftSharp and,
          exported to ONNX, by ONNX Runtime's CPU provider with as many threads; same batch, timed alternately.
        """;

    public int Run(CommandLine line)
    {
        if (line.Get("gemm") != null) return Gemm(line);
        var model = VitConfig.Resolve(line.Get("model") ?? (line.Get("config") == null ? "vit_tiny_patch4_32" : null), line.Get("config"))!
            with { NumClasses = 10 };
        var methods = line.Get("methods")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList()
                      ?? TunerRegistry.ImageMethods.Select(m => m.Id).ToList();
        foreach (var m in methods) TunerRegistry.Parse(m);
        int? multiAdapter = line.Get("multi-adapter") is null ? null : line.Int("multi-adapter", 0);
        bool onnx = line.Flag("onnx");
        if ((multiAdapter is not null || onnx) && line.Get("methods") is null) methods = ["lora"];
        if (multiAdapter is not null && onnx) throw new PeftSharpException("perf: --multi-adapter and --onnx are separate measurements; run one at a time");
        if (onnx && methods.Count != 1) throw new PeftSharpException($"perf --onnx: measures one merged model; give one method (--methods lora), got {methods.Count}");
        var options = new PerfOptions
        {
            Model = model, Methods = methods, Batch = line.Int("batch", 64), Steps = line.Int("steps", 6),
            WarmupSteps = line.Int("warmup", 2), Device = Devices.Parse(line.Get("device")),
            Settings = SharedOptions.Settings(line),
        };
        int threads = line.Int("threads", Environment.ProcessorCount);
        bool json = line.Flag("json");
        bool inProcess = line.Flag("in-process") || methods.Count == 1;
        options = options with { Baseline = !line.Flag("no-baseline"), Profile = line.Flag("profile"), GradCheckpointing = line.Flag("grad-checkpointing"),
                             PairedWithFull = line.Flag("paired") };
        var childArgs = new List<string> { "--batch", options.Batch.ToString(), "--steps", options.Steps.ToString(), "--warmup",
                                           options.WarmupSteps.ToString(), "--threads", threads.ToString(), "--json", "--in-process", "--no-baseline" };
        if (options.Profile) childArgs.Add("--profile");
        if (options.GradCheckpointing) childArgs.Add("--grad-checkpointing");
        if (options.PairedWithFull) childArgs.Add("--paired");
        // auto is decided once here (the model's shape at --batch); the children measure the precision it chose.
        options = options with { Precision = SharedOptions.Precision(line, () => model, options.Batch) };
        childArgs.AddRange(new[] { "--precision", Autocast.Name(options.Precision) });
        foreach (var key in options.Settings.Keys)
            if (!methods.Any(m => options.SettingsFor(m).ContainsKey(key)))
                throw new PeftSharpException($"--set {key} is a hyperparameter of none of the measured methods ({string.Join(", ", methods)})");
        foreach (var key in new[] { "model", "config", "device" })
            if (line.Get(key) is string value) childArgs.AddRange(new[] { "--" + key, value });
        line.RejectUnknown();
        if (options.Batch < 1 || options.Steps < 1 || options.WarmupSteps < 0 || threads < 1)
            throw new PeftSharpException("perf: --batch, --steps and --threads must be >= 1, --warmup >= 0");
        TorchSharp.torch.set_num_threads(threads);
        if (multiAdapter is not null || onnx)
        {
            // These measure inference in fp32 in this process; the training options would be ignored, so they are refused.
            string what = onnx ? "--onnx" : "--multi-adapter";
            foreach (var flag in new[] { "profile", "paired", "grad-checkpointing", "no-baseline", "in-process" })
                if (line.Flag(flag)) throw new PeftSharpException($"perf {what}: --{flag} does not apply (an inference measurement in this process)");
            if (options.Precision != PeftSharp.Precision.Float32) throw new PeftSharpException($"perf {what}: measures fp32 inference; leave --precision out");
        }
        if (multiAdapter is int tasks) return MultiAdapter(options, tasks, json);
        if (onnx) return OnnxRuntime(options, methods[0], json);

        var report = PerfBenchmark.Run(options, json ? null : new Progress<string>(Console.WriteLine),
                                       inProcess ? null : method => MeasureInChild(method, childArgs.Concat(SetArguments(options.SettingsFor(method))).ToList()));
        if (json)
        {
            Console.WriteLine(report.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        double? full = report.Methods.FirstOrDefault(m => m.Method == "full")?.TrainImagesPerSecond;
        Console.WriteLine();
        Console.WriteLine($"{"method",-18} {"train img/s",12} {"vs full",8} {"infer",9} {"unmerged/bare",14} {"merged",9} {"merged/bare",12} {"peak RSS MiB",13} {"train mem MiB",14} {"saved MiB",10} {"trainable",12}");
        foreach (var m in report.Methods)
            Console.WriteLine($"{m.Method,-18} {m.TrainImagesPerSecond,12:F1} {(m.VsFull(full) is double ratio ? ratio.ToString("F2") : "-"),8} {m.InferImagesPerSecond,9:F1} {m.UnmergedVsBare,14:F3} " +
                              $"{(m.InferMergedImagesPerSecond is double v ? v.ToString("F1") : "-"),9} {(m.MergedVsBare is double r ? r.ToString("F3") : "-"),12} " +
                              $"{m.PeakRssBytes / 1048576.0,13:F0} {m.TrainingPeakBytes / 1048576.0,14:F0} " +
                              $"{(m.SavedActivationBytes is long saved ? (saved / 1048576.0).ToString("F0") : "-"),10} {m.TrainableParams,12:N0}");
        Console.WriteLine(options.PairedWithFull
            ? "(vs full and the vs-bare ratios time full fine-tuning and the bare backbone alternately with the method in the same process)"
            : "(the vs-bare ratios time the bare backbone alternately with the method in the same process)");
        if (options.Profile)
        {
            Console.WriteLine();
            Console.WriteLine($"{"step phases, ms",-18} {"zero_grad",10} {"forward",10} {"backward",10} {"optimizer",10} {"dispose",10} {"total",10}");
            foreach (var m in report.Methods.Where(m => m.Profile != null))
            {
                var p = m.Profile!;
                Console.WriteLine($"{m.Method,-18} {p.ZeroGradMs,10:F2} {p.ForwardMs,10:F2} {p.BackwardMs,10:F2} {p.OptimizerMs,10:F2} {p.DisposeMs,10:F2} {p.TotalMs,10:F2}");
            }
        }
        static string Measured(double value, string unit) => double.IsNaN(value) ? "not measured (--no-baseline)" : $"{value:F1} {unit}";
        Console.WriteLine($"bare backbone inference {Measured(report.BareInferImagesPerSecond, "img/s")}; sgemm {Measured(report.SgemmGflops, "GFLOP/s")}; {report.Threads} threads; {Autocast.Name(report.Precision)}");
        return 0;
    }

    /// <summary>perf --gemm N: the float32 and bf16 GEMM rates of this machine, as JSON.</summary>
    static int Gemm(CommandLine line)
    {
        int n = line.Int("gemm", 0), threads = line.Int("threads", Environment.ProcessorCount);
        line.RejectUnknown();
        if (n < 1 || threads < 1) throw new PeftSharpException("perf: --gemm and --threads must be >= 1");
        TorchSharp.torch.set_num_threads(threads);
        var rates = PerfBenchmark.GemmRates(n, PeftSharp.Precision.Float32, PeftSharp.Precision.BFloat16);
        var json = new System.Text.Json.Nodes.JsonObject
        {
            ["gemm_n"] = n, ["threads"] = TorchSharp.torch.get_num_threads(),
            ["fp32_gflops"] = Math.Round(rates[0], 1), ["bf16_gflops"] = Math.Round(rates[1], 1),
        };
        Console.WriteLine(json.ToJsonString());
        return 0;
    }

    static int OnnxRuntime(PerfOptions options, string method, bool json)
    {
        var report = OnnxRuntimePerf.Run(options, method);
        if (json)
        {
            Console.WriteLine(report.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        Console.WriteLine($"merged {method} ViT, batch {report.Batch}, {report.Threads} threads:");
        Console.WriteLine($"  PeftSharp (TorchSharp)         {report.OursImagesPerSecond,9:F1} img/s");
        Console.WriteLine($"  ONNX Runtime {report.OnnxRuntimeVersion,-17} {report.OnnxRuntimeImagesPerSecond,9:F1} img/s");
        Console.WriteLine($"  PeftSharp / ONNX Runtime {report.Ratio:F3} (timed alternately in this process)");
        return 0;
    }

    static int MultiAdapter(PerfOptions options, int tasks, bool json)
    {
        if (tasks < 1) throw new PeftSharpException($"perf: --multi-adapter must be at least 1 (got {tasks})");
        var report = MultiAdapterPerf.Run(options, tasks);
        if (json)
        {
            Console.WriteLine(report.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        Console.WriteLine($"{tasks} adapters ({string.Join(", ", report.Methods)}) on one backbone, mixed batch of {report.Batch}, {report.Threads} threads:");
        Console.WriteLine($"  mixed batch, shared backbone  {report.MixedImagesPerSecond,9:F1} img/s  {report.SharedParameters,14:N0} parameters");
        Console.WriteLine($"  one merged model per task     {report.PerTaskImagesPerSecond,9:F1} img/s  {report.PerTaskParameters,14:N0} parameters");
        Console.WriteLine($"  mixed / per task {report.Ratio:F3} (timed alternately in this process)");
        return 0;
    }

    static IEnumerable<string> SetArguments(IReadOnlyDictionary<string, string> settings) =>
        settings.SelectMany(kv => new[] { "--set", $"{kv.Key}={kv.Value}" });

    /// <summary>Runs `perf --methods METHOD --json --in-process` as a child of this same program and reads its entry.</summary>
    static MethodPerf MeasureInChild(string method, IReadOnlyList<string> args)
    {
        string host = Environment.ProcessPath ?? "dotnet";
        var psi = new System.Diagnostics.ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(typeof(PerfCommand).Assembly.Location);
        foreach (var a in new[] { "perf", "--methods", method }.Concat(args)) psi.ArgumentList.Add(a);
        using var child = System.Diagnostics.Process.Start(psi)!;
        var stderr = child.StandardError.ReadToEndAsync();
        string stdout = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0) throw new PeftSharpException($"perf: measuring '{method}' failed: {stderr.Result.Trim()}");
        var entry = System.Text.Json.Nodes.JsonNode.Parse(stdout)!["methods"]!.AsArray().Single()!.AsObject();
        return PerfReport.MethodFromJson(entry);
    }
}
