using System.Text.Json.Nodes;
using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tuners;
using PeftSharp.VisionLanguage;

namespace PeftSharp.Cli.Commands;

/// <summary>Fine-tunes and evaluates CLIP models: PEFT on the image tower, the text tower or both.</summary>
public sealed class ClipCommand : ICommand
{
    public string Name => "clip";
    public string Summary => "fine-tune (any method, either or both towers) and evaluate a CLIP model: retrieval and prompt classification";
    public IEnumerable<string> Flags => new[] { "help", "json" };
    public string Usage => $"""
        peftsharp clip train (--task {string.Join("|", VlTasks.Names)} | --train DIR --test DIR) --method ID[+ID...]
                             [--set key=value ...] [--towers image|text|both] [--fraction 1] [--steps 120] [--batch-size 32]
                             [--lr 1e-3] [--wd 1e-4] [--seed 42] [--checkpoint FILE] [--save-adapter DIR]
                             [--save-merged FILE.safetensors] [--precision fp32|bf16|auto] [--json]
          Trains the method on the towers (default both) of the CLIP model (default: the shipped one) and scores it
          on the test pairs. --task picks a built-in task (retrieval, or classification through class prompts);
          --train/--test read caption folders (captions.tsv with columns 'image' and 'caption', image paths
          relative to the folder) and train contrastively. --fraction trains on that share of the training pairs.
          --save-adapter writes only the trained tensors; --save-merged folds mergeable methods into the weights
          and writes a plain open_clip-keyed checkpoint.
        peftsharp clip eval (--task T | --test DIR) [--checkpoint FILE] [--adapter DIR] [--precision fp32|bf16|auto] [--json]
          Scores the model (with an adapter applied, if given) without training: zero-shot when neither is tuned.
        --precision bf16 runs the towers' products under bfloat16 autocast (training and scoring; the losses stay
        float32); auto times both on this CPU for the image tower's shapes and says which it chose.
        Scores: recall@1/5/10 in both directions for retrieval, top-1 for classification. Captions longer than the
        model's context are cut where open_clip cuts them (the last kept token becomes end-of-text), and counted.
        """;

    public int Run(CommandLine line)
    {
        if (line.Positional.Count == 0 || line.Positional[0] is not ("train" or "eval"))
            throw new PeftSharpException("clip: expected 'clip train' or 'clip eval'");
        bool train = line.Positional[0] == "train", json = line.Flag("json");
        string checkpoint = line.Get("checkpoint") ?? ShippedModels.RequireDefaultClip();
        var loaded = ModelCheckpoints.LoadClip(checkpoint).Model;
        var normalization = Normalization.FromName(ModelCheckpoints.ReadNormalization(checkpoint) ?? "inception");
        var task = ReadTask(line, loaded.Config.Vision.ImgSize, train);
        var precision = SharedOptions.Precision(line, () => loaded.Config.Vision, new ClipTrainOptions().BatchSize);
        var result = new JsonObject { ["task"] = task.Name, ["checkpoint"] = Path.GetFileName(checkpoint), ["test_pairs"] = task.Test.Count };
        Report(task.Test, loaded.Config.Text.ContextLength);
        PeftModel? peft = null;
        if (train)
        {
            string method = line.Require("method");
            var settings = SharedOptions.Settings(line);
            var towers = ClipRuns.ParseTowers(line.Get("towers") ?? "both");
            var d = new ClipTrainOptions();
            var options = new ClipTrainOptions
            {
                Objective = task.Objective, Steps = line.Int("steps", d.Steps), BatchSize = line.Int("batch-size", d.BatchSize),
                Lr = line.Double("lr", d.Lr), WeightDecay = line.Double("wd", d.WeightDecay), Seed = line.Int("seed", d.Seed), Normalization = normalization,
                Precision = precision,
            };
            var data = task.TrainFraction(line.Double("fraction", 1.0));
            string? adapterDir = line.Get("save-adapter"), merged = line.Get("save-merged");
            line.RejectUnknown(maxPositional: 1);
            Report(data, loaded.Config.Text.ContextLength);
            TorchSharp.torch.manual_seed(options.Seed);
            peft = ClipRuns.Apply(loaded, method, settings, towers);
            if (!json) Console.WriteLine($"{method} on {string.Join("+", towers)}: {peft.Summary()}; {data.Count} training pairs");
            var trained = new ClipTrainer(peft, options).Fit(data);
            result["method"] = method;
            result["towers"] = string.Join("+", towers);
            result["train_pairs"] = data.Count;
            result["trainable_params"] = peft.CountTrainable(includeHead: true);
            result["final_loss"] = Math.Round(trained.FinalLoss, 4);
            result["train_seconds"] = Math.Round(trained.Seconds, 1);
            if (adapterDir != null) AdapterFiles.Save(peft, adapterDir, checkpoint);
            Score(loaded, task, normalization, precision, result);
            if (merged != null)
            {
                var plain = (ClipModel)peft.MergeAndUnload();
                ModelCheckpoints.SaveClip(merged, plain, metadata: new Dictionary<string, string> { [ModelCheckpoints.NormalizationKey] = normalization.Name });
            }
        }
        else
        {
            string? adapter = line.Get("adapter");
            line.RejectUnknown(maxPositional: 1);
            if (adapter != null) peft = AdapterFiles.Load(loaded, adapter);
            result["adapter"] = adapter;
            Score(loaded, task, normalization, precision, result);
        }
        Console.WriteLine(json ? result.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })
                               : string.Join("\n", result.Select(kv => $"{kv.Key}: {kv.Value}")));
        return 0;
    }

    static VlTask ReadTask(CommandLine line, int imageSize, bool train)
    {
        string? name = line.Get("task"), trainDir = line.Get("train"), testDir = line.Get("test");
        if (name != null)
        {
            if (trainDir != null || testDir != null) throw new PeftSharpException("clip: give --task or --train/--test, not both");
            return VlTasks.Load(name, Path.Combine(Path.GetTempPath(), "peftsharp-vl-suite"), imageSize);
        }
        if (testDir == null) throw new PeftSharpException($"clip: give --task ({string.Join(", ", VlTasks.Names)}) or --test DIR{(train ? " and --train DIR" : "")}");
        if (train && trainDir == null) throw new PeftSharpException("clip train: --test DIR needs --train DIR");
        var test = CaptionSet.Load(testDir, imageSize);
        var trainSet = trainDir != null ? CaptionSet.Load(trainDir, imageSize) : test;
        return new VlTask(test.Name, $"caption folders {trainDir ?? "-"} / {testDir}", false, ClipObjective.Contrastive, trainSet, test);
    }

    /// <summary>Says how many captions the context cuts, as open_clip would cut them.</summary>
    static void Report(CaptionSet set, int context)
    {
        CaptionSet.Tokenize(set.Captions, context, out int truncated).Dispose();
        if (truncated > 0) Console.Error.WriteLine($"{set.Name}: {truncated} of {set.Count} captions are longer than the {context}-token context and were truncated");
    }

    /// <summary>The test score as the studies store it (recalls in percent for retrieval, top-1 for classification).</summary>
    static void Score(ClipModel model, VlTask task, Normalization normalization, Precision precision, JsonObject result)
    {
        result["precision"] = Interop.Autocast.Name(precision);
        foreach (var (k, v) in ClipScore.Of(model, task, normalization, precision).Metrics) result[k] = Math.Round(v, 2);
    }
}
