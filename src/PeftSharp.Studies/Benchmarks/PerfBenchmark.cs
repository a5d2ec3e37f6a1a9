using PeftSharp.Interop;
using System.Diagnostics;
using System.Text.Json.Nodes;
using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Benchmarks;

public sealed record PerfOptions
{
    public required VitConfig Model { get; init; }
    public IReadOnlyList<string> Methods { get; init; } = TunerRegistry.ImageMethods.Select(m => m.Id).ToList();
    public int Batch { get; init; } = 64;
    public int WarmupSteps { get; init; } = 2;
    public int Steps { get; init; } = 6;
    public Device Device { get; init; } = CPU;
    /// <summary>Precision of training and inference (bf16: libtorch autocast).</summary>
    public Precision Precision { get; init; } = Precision.Float32;
    /// <summary>Measure sgemm and the bare backbone too (a child process measuring one method skips them).</summary>
    public bool Baseline { get; init; } = true;
    /// <summary>Train with checkpointed blocks (<see cref="TrainOptions.GradCheckpointing"/>).</summary>
    public bool GradCheckpointing { get; init; }
    /// <summary>Time each method's training steps alternately with full fine-tuning's in the same process, and take
    /// "vs full" from those pairs rather than from runs at different times (on a noisy machine they drift apart).</summary>
    public bool PairedWithFull { get; init; }
    /// <summary>Also time the phases of a training step (<see cref="StepProfile"/>).</summary>
    public bool Profile { get; init; }
    /// <summary>Hyperparameters (--set) applied to each measured method that has them, e.g. dropout=0 to match a
    /// peer implementation without LoRA dropout.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();

    /// <summary>The settings that apply to <paramref name="method"/> (a composition takes "id.name" keys too).</summary>
    public Dictionary<string, string> SettingsFor(string method)
    {
        var parts = TunerRegistry.Parse(method);
        bool Applies(string key) => key.Split('.', 2) is [var id, var name]
            ? parts.Any(m => m.Id == id && m.Hypers.Any(h => h.Name == name))
            : parts.Any(m => m.Hypers.Any(h => h.Name == key));
        return Settings.Where(kv => Applies(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
    }
}

/// <summary>Where a training step's time goes: the median milliseconds of each phase over the timed steps. The CPU
/// backend runs synchronously, so wall time per phase is that phase's cost.</summary>
public sealed record StepProfile(double ZeroGradMs, double ForwardMs, double BackwardMs, double OptimizerMs, double DisposeMs)
{
    public double TotalMs => ZeroGradMs + ForwardMs + BackwardMs + OptimizerMs + DisposeMs;

    public JsonObject ToJson() => new()
    {
        ["zero_grad_ms"] = Math.Round(ZeroGradMs, 3), ["forward_ms"] = Math.Round(ForwardMs, 3), ["backward_ms"] = Math.Round(BackwardMs, 3),
        ["optimizer_ms"] = Math.Round(OptimizerMs, 3), ["dispose_ms"] = Math.Round(DisposeMs, 3), ["total_ms"] = Math.Round(TotalMs, 3),
    };

    public static StepProfile? FromJson(JsonNode? node) => node is JsonObject o
        ? new(o["zero_grad_ms"]!.GetValue<double>(), o["forward_ms"]!.GetValue<double>(), o["backward_ms"]!.GetValue<double>(),
              o["optimizer_ms"]!.GetValue<double>(), o["dispose_ms"]!.GetValue<double>())
        : null;
}

/// <summary>One method's measurements. The vs-bare ratios come from the bare backbone timed in the same process,
/// step by step alternating with the tuned model, so warm-up and machine drift cancel out. <c>PeakRssBytes</c> is the
/// process's peak resident set during training; <c>TrainingPeakBytes</c> that peak less the resident set just before
/// the first training step (runtime, libtorch, model and batch): the memory training itself takes (activations,
/// gradients, optimizer state).</summary>
public sealed record MethodPerf(string Method, long TrainableParams, double TrainImagesPerSecond, double InferImagesPerSecond,
                                double? InferMergedImagesPerSecond, long PeakRssBytes, long TrainingPeakBytes, long TrainingStateBytes,
                                bool FirstBlockSkipped, int FirstTrainableBlock, double UnmergedVsBare, double? MergedVsBare)
{
    public StepProfile? Profile { get; init; }
    /// <summary>What a training forward leaves allocated for the backward (autograd's saved tensors, and the outputs
    /// of frozen leading blocks the step still holds): native bytes allocated after the loss less before the forward
    /// (<see cref="NativeHeap.AllocatedBytes"/>; the freed blocks the heap keeps do not count, so unlike
    /// <see cref="TrainingPeakBytes"/> it does not move with fragmentation). Null where not measurable.</summary>
    public long? SavedActivationBytes { get; init; }
    /// <summary>Training rate over full fine-tuning's, timed alternately in the same process (<see cref="PerfOptions.PairedWithFull"/>).</summary>
    public double? PairedVsFull { get; init; }

    /// <summary>Training rate relative to full fine-tuning: the paired ratio where measured, else over <paramref name="fullRate"/>.</summary>
    public double? VsFull(double? fullRate) => PairedVsFull ?? (fullRate is double f ? TrainImagesPerSecond / f : null);
}

public sealed record PerfReport(VitConfig Model, int Batch, int Threads, double SgemmGflops, double BareInferImagesPerSecond,
                                IReadOnlyList<MethodPerf> Methods)
{
    public Precision Precision { get; init; } = Precision.Float32;
    public bool GradCheckpointing { get; init; }

    /// <summary>Reads back one method's entry of <see cref="ToJson"/> (a child process's report).</summary>
    public static MethodPerf MethodFromJson(JsonObject m) => new(
        m["method"]!.GetValue<string>(), m["trainable_params"]!.GetValue<long>(), m["train_images_per_s"]!.GetValue<double>(),
        m["infer_images_per_s"]!.GetValue<double>(), m["infer_merged_images_per_s"]?.GetValue<double>(),
        m["peak_rss_bytes"]!.GetValue<long>(), m["training_peak_bytes"]!.GetValue<long>(), m["training_state_bytes"]!.GetValue<long>(),
        m["first_trainable_block"]!.GetValue<int>() > 0, m["first_trainable_block"]!.GetValue<int>(),
        m["unmerged_vs_bare"]!.GetValue<double>(), m["merged_vs_bare"]?.GetValue<double>())
    {
        Profile = StepProfile.FromJson(m["profile"]),
        PairedVsFull = m["paired_vs_full"]?.GetValue<double>(),
        SavedActivationBytes = m["saved_activation_bytes"]?.GetValue<long>(),
    };

    public JsonObject ToJson()
    {
        double? full = Methods.FirstOrDefault(m => m.Method == "full")?.TrainImagesPerSecond;
        long? fullMemory = Methods.FirstOrDefault(m => m.Method == "full")?.TrainingPeakBytes;
        return new JsonObject
        {
            ["model"] = JsonNode.Parse(Model.ToJson()), ["batch"] = Batch, ["threads"] = Threads, ["precision"] = Autocast.Name(Precision),
            ["grad_checkpointing"] = GradCheckpointing,
            ["sgemm_gflops"] = double.IsNaN(SgemmGflops) ? null : Math.Round(SgemmGflops, 2),
            ["bare_infer_images_per_s"] = double.IsNaN(BareInferImagesPerSecond) ? null : Math.Round(BareInferImagesPerSecond, 2),
            ["methods"] = new JsonArray(Methods.Select(m => (JsonNode)new JsonObject
            {
                ["method"] = m.Method, ["trainable_params"] = m.TrainableParams,
                ["train_images_per_s"] = Math.Round(m.TrainImagesPerSecond, 2),
                ["infer_images_per_s"] = Math.Round(m.InferImagesPerSecond, 2),
                ["infer_merged_images_per_s"] = m.InferMergedImagesPerSecond is double v ? Math.Round(v, 2) : null,
                ["peak_rss_bytes"] = m.PeakRssBytes, ["training_peak_bytes"] = m.TrainingPeakBytes, ["training_state_bytes"] = m.TrainingStateBytes,
                ["saved_activation_bytes"] = m.SavedActivationBytes,
                ["train_vs_full"] = m.VsFull(full) is double ratio ? Math.Round(ratio, 3) : null,
                ["paired_vs_full"] = m.PairedVsFull is double paired ? Math.Round(paired, 3) : null,
                ["training_memory_vs_full"] = fullMemory is long fm && fm > 0 ? Math.Round((double)m.TrainingPeakBytes / fm, 3) : null,
                ["merged_vs_bare"] = m.MergedVsBare is double mv ? Math.Round(mv, 3) : null,
                ["unmerged_vs_bare"] = Math.Round(m.UnmergedVsBare, 3),
                ["first_trainable_block"] = m.FirstTrainableBlock,
                ["profile"] = m.Profile?.ToJson(),
            }).ToArray()),
        };
    }
}

/// <summary>
/// Training and inference throughput per method on random data (median step time after warm-up), merged vs bare
/// inference, peak RSS per method, and a measured sgemm rate so figures read as a fraction of the hardware.
/// </summary>
public static class PerfBenchmark
{
    /// <param name="measure">Measures one method; by default in this process. The CLI passes one that runs each
    /// method in a fresh child process, so peak RSS is the method's own and allocator state does not carry over.</param>
    public static PerfReport Run(PerfOptions o, IProgress<string>? log = null, Func<string, MethodPerf>? measure = null)
    {
        double gflops = o.Baseline ? Sgemm() : double.NaN;
        if (o.Baseline) log?.Report($"sgemm {gflops:F1} GFLOP/s, {get_num_threads()} threads");
        manual_seed(0);
        var images = randn(o.Batch, o.Model.InChans, o.Model.ImgSize, o.Model.ImgSize, device: o.Device);
        var labels = randint(0, Math.Max(2, o.Model.NumClasses), new long[] { o.Batch }, device: o.Device);
        double bare = double.NaN;
        if (o.Baseline)
        {
            // Warm the allocator and thread pool with a few training steps first, so the first method measured is not
            // penalised (the first steps of a process run several times slower). A child measuring one method skips
            // this: the heap keeps what a warm-up grew (NativeHeap), which would count in that method's memory.
            using var model = NewModel(o);
            Measure("full", o with { Steps = 2, WarmupSteps = 2 }, images, labels);
            bare = InferenceRate(model, images, o);
            log?.Report($"bare backbone inference {bare:F1} img/s");
        }
        var results = new List<MethodPerf>();
        foreach (var method in o.Methods)
        {
            var r = measure?.Invoke(method) ?? Measure(method, o, images, labels);
            log?.Report($"{method}: train {r.TrainImagesPerSecond:F1} img/s, infer {r.InferImagesPerSecond:F1} img/s" +
                        (r.InferMergedImagesPerSecond is double m ? $", merged {m:F1} img/s" : "") + $", peak RSS {r.PeakRssBytes / 1048576.0:F0} MiB");
            results.Add(r);
        }
        return new PerfReport(o.Model, o.Batch, get_num_threads(), gflops, bare, results) { Precision = o.Precision, GradCheckpointing = o.GradCheckpointing };
    }

    static VisionTransformer NewModel(PerfOptions o)
    {
        var model = new VisionTransformer(o.Model with { DropPathRate = 0 });
        model.to(o.Device);
        return model;
    }

    /// <summary>A model with <paramref name="method"/> applied and one training step of it on the batch.</summary>
    sealed class TrainingRig : IDisposable
    {
        public VisionTransformer Model { get; }
        public PeftModel Peft { get; }
        public List<TorchSharp.Modules.Parameter> Parameters { get; }
        /// <summary>The trainers' step core, at a constant learning rate (a timed step, not a schedule).</summary>
        public OptimizerSteps Steps { get; }
        public optim.Optimizer Optimizer => Steps.Optimizer;
        public Trainer Trainer { get; }
        readonly Tensor images, labels;
        readonly DeviceType device;

        public TrainingRig(string method, PerfOptions o, Tensor images, Tensor labels)
        {
            (this.images, this.labels, device) = (images, labels, o.Device.type);
            Model = NewModel(o);
            Peft = PeftModel.Create(Model, method, o.SettingsFor(method));
            Parameters = Peft.TrainableParameters().Select(p => p.Parameter).ToList();
            Steps = new OptimizerSteps(Parameters, 1e-4, 0.01, new ConstantSchedule(1e-4));
            Trainer = new Trainer(Peft, new TrainOptions { DropPath = 0, Precision = o.Precision, GradCheckpointing = o.GradCheckpointing }, o.Device);
            Model.train();
        }

        public Tensor Loss() => F.cross_entropy(Trainer.Logits(images), labels);

        public void Step() => Steps.Step(Loss, "a timed step");

        /// <summary>A training step that returns the native bytes its forward leaves allocated for the backward.</summary>
        public long? StepMeasuringSavedActivations()
        {
            using var stepScope = NativeHeap.StepScope(device);
            Optimizer.zero_grad();
            long? before = NativeHeap.AllocatedBytes(device);
            var loss = Loss();
            NativeHeap.CollectStepGarbage();   // the forward's dead scalar wrappers are not activations
            long? after = NativeHeap.AllocatedBytes(device);
            loss.backward();
            Optimizer.step();
            return after - before;
        }

        public void Dispose()
        {
            Steps.Dispose();
            Model.Dispose();
        }
    }

    static MethodPerf Measure(string method, PerfOptions o, Tensor images, Tensor labels)
    {
        using var rig = new TrainingRig(method, o, images, labels);
        var (model, peft) = (rig.Model, rig.Peft);
        // Memory first, over two steps from the idle process (the heap keeps what it grew, NativeHeap), then speed.
        GC.Collect();
        long idle = ProcessMemory.CurrentRss();
        ProcessMemory.ResetPeakRss();
        long peak;
        long? savedActivations;
        double trainRate;
        double? pairedVsFull = null;
        StepProfile? profile;
        using (CastOnce.FrozenLayers(model, o.Precision))   // as Trainer.Fit trains
        {
            rig.Step();
            rig.Step();
            peak = ProcessMemory.PeakRss();
            savedActivations = rig.StepMeasuringSavedActivations();
            if (o.PairedWithFull && method != "full")
            {
                using var full = new TrainingRig("full", o, images, labels);
                var rates = Rates(o, rig.Step, full.Step);
                (trainRate, pairedVsFull) = (rates[0], rates[0] / rates[1]);
            }
            else trainRate = Rate(o, rig.Step);
            profile = o.Profile ? ProfileSteps(o, rig.Optimizer, rig.Loss) : null;
        }
        long stateBytes = rig.Parameters.Sum(p => p.numel() * p.ElementSize * 4);   // parameter + gradient + two AdamW moments
        long trainable = peft.CountTrainable();
        using var bare = NewModel(o);
        var (infer, bareNextToUnmerged) = PairedInferenceRates(model, bare, images, o);
        double? merged = null, mergedVsBare = null;
        if (peft.Mergeable)
        {
            var plain = (VisionTransformer)peft.MergeAndUnload();
            var (mergedRate, bareNextToMerged) = PairedInferenceRates(plain, bare, images, o);
            (merged, mergedVsBare) = (mergedRate, mergedRate / bareNextToMerged);
        }
        return new MethodPerf(method, trainable, trainRate, infer, merged, peak, Math.Max(0, peak - idle), stateBytes,
                              rig.Trainer.FirstTrainableBlock > 0, rig.Trainer.FirstTrainableBlock, infer / bareNextToUnmerged, mergedVsBare)
        {
            Profile = profile,
            PairedVsFull = pairedVsFull,
            SavedActivationBytes = savedActivations,
        };
    }

    /// <summary>Times each phase of <see cref="PerfOptions.Steps"/> training steps (after the rate's own warm-up).</summary>
    static StepProfile ProfileSteps(PerfOptions o, optim.Optimizer optimizer, Func<Tensor> loss)
    {
        var phases = Enumerable.Range(0, 5).Select(_ => new List<double>()).ToArray();
        var watch = new Stopwatch();
        void Lap(int phase)
        {
            phases[phase].Add(watch.Elapsed.TotalMilliseconds);
            watch.Restart();
        }
        for (int i = 0; i < o.Steps; i++)
        {
            watch.Restart();
            var stepScope = NativeHeap.StepScope(o.Device.type);
            optimizer.zero_grad();
            Lap(0);
            var value = loss();
            value.item<float>();
            Lap(1);
            value.backward();
            Lap(2);
            optimizer.step();
            Lap(3);
            stepScope.Dispose();
            Lap(4);
        }
        return new StepProfile(Median(phases[0]), Median(phases[1]), Median(phases[2]), Median(phases[3]), Median(phases[4]));
    }

    static Action InferenceStep(VisionTransformer model, Tensor images, PerfOptions o)
    {
        model.eval();
        return () =>
        {
            using var stepScope = NativeHeap.StepScope(o.Device.type);
            using var _ = inference_mode();
            using var precision = Autocast.Enter(o.Precision, o.Device);
            model.forward(images);
        };
    }

    /// <summary>Inference as a deployed model runs: its layers cast once (bf16), not per batch.</summary>
    static double InferenceRate(VisionTransformer model, Tensor images, PerfOptions o)
    {
        using var weights = CastOnce.Inference(model, o.Precision);
        return Rates(o, InferenceStep(model, images, o))[0];
    }

    /// <summary>Inference rates of a model and the bare backbone, timed alternately step by step.</summary>
    static (double Model, double Bare) PairedInferenceRates(VisionTransformer model, VisionTransformer bare, Tensor images, PerfOptions o)
    {
        using var modelWeights = CastOnce.Inference(model, o.Precision);
        using var bareWeights = CastOnce.Inference(bare, o.Precision);
        var rates = Rates(o, InferenceStep(model, images, o), InferenceStep(bare, images, o));
        return (rates[0], rates[1]);
    }

    static double Rate(PerfOptions o, Action step) => Rates(o, step)[0];

    /// <summary>Images per second of each step from the median of its timed runs after warm-up; the steps take
    /// turns, so drift on a shared machine affects them alike.</summary>
    internal static double[] Rates(PerfOptions o, params Action[] steps)
    {
        for (int i = 0; i < o.WarmupSteps; i++) foreach (var step in steps) step();
        var times = steps.Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < o.Steps; i++)
            for (int s = 0; s < steps.Length; s++)
            {
                var watch = Stopwatch.StartNew();
                steps[s]();
                times[s].Add(watch.Elapsed.TotalSeconds);
            }
        return times.Select(t => o.Batch / Median(t)).ToArray();
    }

    /// <summary>The median of the timings (sorts them in place).</summary>
    static double Median(List<double> t)
    {
        t.Sort();
        return t.Count % 2 == 1 ? t[t.Count / 2] : (t[t.Count / 2 - 1] + t[t.Count / 2]) / 2;
    }

    /// <summary>Measured single-precision matrix-multiply rate (1024³, median of 5).</summary>
    public static double Sgemm(int n = 1024) => GemmRates(n, Precision.Float32)[0];

    /// <summary>GFLOP/s of an n×n·n×n product in each precision (operands stored in it: bf16 is the kernels'
    /// rate, not autocast's casts), the precisions timed in turn so a busy machine slows them alike; the median
    /// of 7 timed products after 2 warm-up ones. The ceiling a model's figures are read against (peer-compare.sh).</summary>
    public static double[] GemmRates(int n, params Precision[] precisions)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var a = randn(n, n);
        var b = randn(n, n);
        var operands = precisions.Select(p => p == Precision.BFloat16 ? (a.to(ScalarType.BFloat16), b.to(ScalarType.BFloat16)) : (a, b)).ToArray();
        var times = precisions.Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < 9; i++)
            for (int k = 0; k < operands.Length; k++)
            {
                var watch = Stopwatch.StartNew();
                operands[k].Item1.matmul(operands[k].Item2).Dispose();
                if (i >= 2) times[k].Add(watch.Elapsed.TotalSeconds);
            }
        return times.Select(t => 2.0 * n * n * n / Median(t) / 1e9).ToArray();
    }
}
