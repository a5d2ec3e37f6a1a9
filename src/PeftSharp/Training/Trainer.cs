using PeftSharp.Interop;
using System.Diagnostics;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using DataLoader = PeftSharp.Data.DataLoader;
using Optimizer = TorchSharp.Modules.AdamW;

namespace PeftSharp.Training;

/// <summary>One optimisation step's progress, for progress bars and logs.</summary>
public sealed record TrainProgress(int Epoch, int Epochs, int Step, int StepsPerEpoch, double Loss, double Lr, double ImagesPerSecond);

/// <param name="Seconds">Training time, a method's pre-pass included.</param>
/// <param name="PrePassSeconds">The part of <paramref name="Seconds"/> the methods' pre-passes took (0 for methods without one;
/// on a resumed run, the time the pass took when it ran).</param>
/// <param name="PrePassReused">The pre-pass's selection came from a stored pre-pass of the same data, backbone, method
/// settings and seed (<see cref="IPrePassStore"/>), not from running it.</param>
public sealed record TrainResult(int Epochs, double FinalLoss, IReadOnlyList<double> EpochLosses, double Seconds,
                                 double ImagesPerSecond, bool UsedFeatureCache, int FirstTrainableBlock, double PrePassSeconds = 0,
                                 bool PrePassReused = false);

/// <summary>Where a run's pre-pass result is kept for other runs that would compute the same one (a grid over learning
/// rates: the pass reads neither the lr nor the weight decay).</summary>
public interface IPrePassStore
{
    /// <summary>Gives <paramref name="peft"/> the stored selection of this run's pre-pass; the seconds the pass took when
    /// it ran, or null when none is stored.</summary>
    double? TryLoad(PeftModel peft);

    /// <summary>Keeps the selection <paramref name="peft"/> now holds, made by a pass of <paramref name="seconds"/>.</summary>
    void Save(PeftModel peft, double seconds);
}

/// <summary>
/// Trains a <see cref="PeftModel"/>'s trainable parameters with AdamW (only those: AdamW keeps state for every tensor
/// it is given) under timm's per-epoch cosine schedule with warm-up, label smoothing, optional gradient clipping.
/// Work a method does not need is skipped: blocks before the first one holding a trainable parameter run without
/// autograd, and when only the head trains its input features are computed once and reused every epoch.
/// </summary>
public sealed class Trainer
{
    /// <summary>How every divergence error starts (callers tell a diverged run from a broken one by it).</summary>
    public const string DivergedMessage = OptimizerSteps.DivergedMessage;

    readonly PeftModel peft;
    readonly VisionTransformer vit;
    readonly TrainOptions options;
    readonly Device device;

    public Trainer(PeftModel peft, TrainOptions options, Device device)
    {
        this.peft = peft;
        vit = peft.Root as VisionTransformer
              ?? throw new PeftSharpException("the trainer trains image classifiers (a ViT with a head); wrap CLIP's image tower as a ViT");
        this.options = options.Validate();
        this.device = device;
        FirstTrainableBlock = FindFirstTrainableBlock(peft);
        vit.GradCheckpointing = options.GradCheckpointing;
    }

    /// <summary>Index of the first block with a trainable parameter (depth when none has one); set again after a
    /// pre-pass, which may choose what trains.</summary>
    public int FirstTrainableBlock { get; private set; }

    /// <summary>Where a pre-pass's selection is looked up before running it, and kept after (null: always run it).</summary>
    public IPrePassStore? PrePassStore { get; init; }

    /// <summary>True when only the head trains, so frozen features can be cached.</summary>
    public bool OnlyHeadTrains => peft.TrainableParameters().All(p => peft.IsHeadName(p.Name));

    public TrainResult Fit(DataLoader train, IProgress<TrainProgress>? progress = null, TrainCheckpoint? checkpoint = null,
                           CancellationToken cancel = default)
    {
        // A method's pre-pass (issue 28: on the training split only, before the first epoch). It comes first because it
        // may choose what trains; a restored checkpoint or a stored pass of the same data carries its selection, so a
        // resumed run, or another lr of a grid, does not redo it.
        double prePassSeconds = 0, prePassNow = 0;
        bool reused = false;
        if (checkpoint?.TryRestoreSelection(peft, out prePassSeconds) != true && peft.NeedsPrePass)
            (prePassSeconds, prePassNow, reused) = PrePass(train);
        FirstTrainableBlock = FindFirstTrainableBlock(peft);

        using var steps = OptimizerSteps.For(peft.TrainableParameters().Select(p => p.Parameter).ToList(), options);
        int startEpoch = 0;
        var losses = new List<double>();
        if (checkpoint?.TryRestore(peft, steps.Optimizer, out startEpoch, losses, out double restoredPrePass) == true)
        {
            prePassSeconds = restoredPrePass;
            if (startEpoch >= options.Epochs)
                return new TrainResult(options.Epochs, losses.LastOrDefault(double.NaN), losses, 0, 0, false, FirstTrainableBlock, prePassSeconds);
        }

        bool cache = options.CacheFrozenFeatures && OnlyHeadTrains && train.Options.Augmentation is null;
        using var features = cache ? FrozenFeatures(train) : null;
        // After the pre-pass (which may change what is frozen): the frozen layers are cast to bf16 once, not per step.
        using var frozenLayers = CastOnce.FrozenLayers(vit, options.Precision);
        var watch = Stopwatch.StartNew();
        long images = 0;
        for (int epoch = startEpoch; epoch < options.Epochs; epoch++)
        {
            double lr = steps.Schedule(epoch);
            vit.train();
            double sum = 0;
            int count = 0;
            foreach (var (inputs, labels, size) in Batches(train, epoch, features))
            {
                cancel.ThrowIfCancellationRequested();
                double value = steps.Step(() =>
                {
                    var logits = features is null ? Logits(inputs.to(device)) : vit.head.forward(vit.head_drop.forward(inputs.to(device)));
                    return F.cross_entropy(logits, labels.to(device), label_smoothing: options.LabelSmoothing);
                }, $"epoch {epoch + 1}, step {count + 1}");
                sum += value;
                count++;
                images += size;
                progress?.Report(new TrainProgress(epoch + 1, options.Epochs, count, StepsPerEpoch(train), value, lr,
                                                   images / Math.Max(watch.Elapsed.TotalSeconds, 1e-9)));
            }
            losses.Add(count > 0 ? sum / count : double.NaN);
            checkpoint?.Save(peft, steps.Optimizer, epoch + 1, losses, prePassSeconds);
        }
        vit.eval();
        double seconds = watch.Elapsed.TotalSeconds;
        return new TrainResult(options.Epochs, losses.LastOrDefault(double.NaN), losses, seconds + prePassNow, images / Math.Max(seconds, 1e-9),
                               features is not null, FirstTrainableBlock, prePassSeconds, reused);
    }

    /// <summary>Runs the pending pre-passes, or loads their stored selection; (the pass's seconds, the seconds spent now,
    /// whether it was reused). The random state is put back afterwards, so training draws the same numbers whether the
    /// pass ran or was loaded (and a pass that rebuilds modules initialises them from the state it found).</summary>
    (double Seconds, double Now, bool Reused) PrePass(DataLoader train)
    {
        using var state = get_rng_state();
        try
        {
            if (PrePassStore?.TryLoad(peft) is double stored) return (stored, 0, true);
            double seconds = peft.RunPrePasses(new PrePassData(train, device, options.Seed));
            PrePassStore?.Save(peft, seconds);
            return (seconds, seconds, false);
        }
        finally
        {
            set_rng_state(state);
        }
    }

    /// <summary>The training forward, float32 logits: frozen leading blocks run without autograd, the rest with it; the
    /// products run in the options' precision.</summary>
    public Tensor Logits(Tensor images)
    {
        int depth = vit.Config.Depth;
        Tensor tokens;
        TokenLayout layout;
        using (Autocast.Enter(options.Precision, device))
        {
            if (FirstTrainableBlock > 0)
            {
                using (no_grad()) tokens = vit.ForwardFeatures(images, out layout, 0, FirstTrainableBlock, finalNorm: false);
                tokens = vit.ForwardFeatures(tokens, out layout, FirstTrainableBlock, depth, layout, pooledOnly: true);
            }
            else tokens = vit.ForwardFeatures(images, out layout, 0, depth, pooledOnly: true);
            tokens = vit.ForwardHead(tokens, layout);
        }
        return tokens.to(float32);
    }

    static int StepsPerEpoch(DataLoader loader) => loader.BatchesPerEpoch;

    /// <summary>Image batches from the loader, or the same batches (same order) of cached features.</summary>
    IEnumerable<(Tensor Inputs, Tensor Labels, int Count)> Batches(DataLoader train, int epoch, Tensor? features)
    {
        if (features is null)
        {
            foreach (var batch in train.Epoch(epoch))
                using (batch) yield return (batch.Images, batch.Labels, batch.Size);
            yield break;
        }
        int[] order = train.EpochOrder(epoch);
        int size = train.Options.BatchSize;
        for (int b = 0; b < train.BatchesPerEpoch; b++)
        {
            var indices = order[(b * size)..Math.Min((b + 1) * size, order.Length)];
            using var rows = tensor(indices.Select(i => (long)i).ToArray());
            using var inputs = features.index_select(0, rows);
            using var labels = tensor(indices.Select(train.Label).ToArray());
            yield return (inputs, labels, indices.Length);
        }
    }

    /// <summary>Pre-logit features of every training image (frozen backbone, eval mode), indexed by dataset index.</summary>
    Tensor FrozenFeatures(DataLoader train)
    {
        vit.eval();
        using var _ = inference_mode();
        var result = zeros(train.Dataset.Count, vit.EmbedDim);
        foreach (var batch in train.Epoch(0))
        {
            using (batch)
            using (NativeHeap.StepScope(device.type))
            {
                var tokens = vit.ForwardFeatures(batch.Images.to(device), out var layout, 0, vit.Config.Depth, pooledOnly: true);
                var pooled = vit.ForwardHead(tokens, layout, preLogits: true).cpu();
                using var rows = tensor(batch.Indices.Select(i => (long)i).ToArray());
                result.index_copy_(0, rows, pooled);
            }
        }
        return result.to(device);
    }

    static int FindFirstTrainableBlock(PeftModel peft)
    {
        int depth = peft.Vit.Config.Depth;
        int first = depth;
        foreach (var (name, _) in peft.TrainableParameters())
        {
            if (peft.IsHeadName(name) || name.StartsWith("norm.", StringComparison.Ordinal) || name.StartsWith("fc_norm.", StringComparison.Ordinal))
                continue;
            var parts = name.Split('.');
            // Anything outside the blocks (embeddings, norm_pre, encoder prompts, shared FacT factors) acts from block 0.
            if (parts[0] != "blocks" || !int.TryParse(parts[1], out int block)) return 0;
            first = Math.Min(first, block);
        }
        return first;
    }
}

/// <summary>
/// The trainable state of a run after each epoch (tuned tensors, AdamW state, epoch, epoch losses, RNG state), saved
/// atomically so an interrupted run resumes where it stopped. Tensors that train outside the method (a dense head)
/// are saved and restored beside the method's when the trainer names them.
/// </summary>
public sealed class TrainCheckpoint
{
    public TrainCheckpoint(string directory) => Directory = directory;

    public string Directory { get; }
    string Tensors => Path.Combine(Directory, "trainable.safetensors");
    string OptimizerState => Path.Combine(Directory, "optimizer.bin");

    /// <param name="outside">Trained tensors outside the method by name (a dense head's "decode_head.*"); null: none.</param>
    public void Save(PeftModel peft, Optimizer optimizer, int epochsDone, IReadOnlyList<double> losses, double prePassSeconds = 0,
                     IReadOnlyDictionary<string, Tensor>? outside = null)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var tensors = peft.TrainableParameters().ToDictionary(p => AdapterFiles.CanonicalName(p.Name), p => (Tensor)p.Parameter.detach().cpu());
        foreach (var (name, buffer) in peft.SelectionState()) tensors[name] = buffer.detach().cpu();
        foreach (var (name, tensor) in outside ?? new Dictionary<string, Tensor>())
        {
            if (tensors.ContainsKey(name)) throw new ArgumentException($"checkpoint tensor '{name}' is both the method's and outside it", nameof(outside));
            tensors[name] = tensor.detach().cpu();
        }
        tensors["__rng_state__"] = get_rng_state();
        string optimizerTmp = OptimizerState + ".tmp";
        optimizer.save_state_dict(optimizerTmp);
        // The tensor file is the commit point: it is written last and names the epoch.
        File.Move(optimizerTmp, OptimizerState + $".{epochsDone}", overwrite: true);
        SafeTensors.Save(Tensors, tensors, new Dictionary<string, string>
        {
            ["epochs_done"] = epochsDone.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["losses"] = string.Join(",", losses.Select(l => l.ToString("R", System.Globalization.CultureInfo.InvariantCulture))),
            ["prepass_seconds"] = prePassSeconds.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        });
        foreach (var stale in System.IO.Directory.EnumerateFiles(Directory, "optimizer.bin.*").Where(f => !f.EndsWith($".{epochsDone}", StringComparison.Ordinal)))
            File.Delete(stale);
    }

    public bool TryRestore(PeftModel peft, Optimizer optimizer, out int epochsDone, List<double> losses) =>
        TryRestore(peft, optimizer, out epochsDone, losses, out _);

    /// <summary>Gives the methods the selection their pre-pass made before the checkpoint was written (before the
    /// optimizer is built: the trained tensors' shapes may follow it); false when there is no checkpoint or it holds
    /// no selection. <paramref name="prePassSeconds"/> is the time the pass took when it ran.</summary>
    public bool TryRestoreSelection(PeftModel peft, out double prePassSeconds)
    {
        prePassSeconds = 0;
        if (!File.Exists(Tensors) || !peft.PrePasses.Any()) return false;
        using var file = SafeTensorsFile.Open(Tensors);
        if (!peft.RestoreSelection(name => file.Contains(name) ? file.ReadTensor(name) : null, Tensors)) return false;
        if (file.Metadata.TryGetValue("prepass_seconds", out var pre))
            prePassSeconds = double.Parse(pre, System.Globalization.CultureInfo.InvariantCulture);
        return true;
    }

    /// <summary>Restores the last epoch's state; <paramref name="prePassSeconds"/> is the time the methods' pre-pass
    /// took when it ran (its selection is restored with the tensors). <paramref name="outside"/> are the tensors
    /// <see cref="Save"/> was given beside the method's, restored in place.</summary>
    public bool TryRestore(PeftModel peft, Optimizer optimizer, out int epochsDone, List<double> losses, out double prePassSeconds,
                           IReadOnlyDictionary<string, Tensor>? outside = null)
    {
        epochsDone = 0;
        prePassSeconds = 0;
        if (!File.Exists(Tensors)) return false;
        using var file = SafeTensorsFile.Open(Tensors);
        epochsDone = int.Parse(file.Metadata["epochs_done"], System.Globalization.CultureInfo.InvariantCulture);
        string optimizerFile = OptimizerState + $".{epochsDone}";
        if (!File.Exists(optimizerFile))
            throw new PeftSharpException($"{Directory}: checkpoint of epoch {epochsDone} has no optimizer state ({Path.GetFileName(optimizerFile)} missing)");
        var byName = peft.TrainableParameters().ToDictionary(p => AdapterFiles.CanonicalName(p.Name), p => (Tensor)p.Parameter);
        var selection = peft.SelectionState();
        foreach (var (name, buffer) in selection) byName[name] = buffer;
        foreach (var (name, tensor) in outside ?? new Dictionary<string, Tensor>()) byName[name] = tensor;
        using (no_grad())
        {
            foreach (var (name, parameter) in byName)
            {
                if (!file.Contains(name)) throw new PeftSharpException($"{Tensors}: no tensor '{name}'; the checkpoint belongs to another method or model");
                using var value = file.ReadTensor(name);
                if (!value.shape.SequenceEqual(parameter.shape))
                    throw new PeftSharpException($"{Tensors}: '{name}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", parameter.shape)}]");
                parameter.copy_(value);
            }
        }
        if (selection.Count > 0) peft.MarkSelected();
        if (file.Metadata.TryGetValue("prepass_seconds", out var pre))
            prePassSeconds = double.Parse(pre, System.Globalization.CultureInfo.InvariantCulture);
        optimizer.load_state_dict(optimizerFile);
        set_rng_state(file.ReadTensor("__rng_state__"));
        losses.Clear();
        losses.AddRange(file.Metadata["losses"].Split(',', StringSplitOptions.RemoveEmptyEntries)
                            .Select(s => double.Parse(s, System.Globalization.CultureInfo.InvariantCulture)));
        return true;
    }

    public void Delete()
    {
        if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
    }
}
