using TorchSharp;
using System.Text.Json.Nodes;
using PeftSharp.Interop;
using PeftSharp.Models;
using PeftSharp.MultiAdapter;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Benchmarks;

/// <summary>Inference of one mixed batch on a shared backbone against one (merged) model per task, timed alternately
/// in the same process. Parameters: what each deployment holds in memory.</summary>
public sealed record MultiAdapterPerfReport(VitConfig Model, int Batch, int Tasks, IReadOnlyList<string> Methods, int Threads,
                                            double MixedImagesPerSecond, double PerTaskImagesPerSecond, long SharedParameters, long PerTaskParameters)
{
    public double Ratio => MixedImagesPerSecond / PerTaskImagesPerSecond;

    public JsonObject ToJson() => new()
    {
        ["model"] = JsonNode.Parse(Model.ToJson()), ["batch"] = Batch, ["tasks"] = Tasks, ["threads"] = Threads,
        ["methods"] = new JsonArray(Methods.Select(m => (JsonNode)m).ToArray()),
        ["mixed_batch_images_per_s"] = Math.Round(MixedImagesPerSecond, 2),
        ["one_merged_model_per_task_images_per_s"] = Math.Round(PerTaskImagesPerSecond, 2),
        ["mixed_vs_per_task"] = Math.Round(Ratio, 3),
        ["shared_backbone_parameters"] = SharedParameters, ["one_model_per_task_parameters"] = PerTaskParameters,
    };
}

/// <summary>
/// peft's mixed-batch case measured: <c>tasks</c> adapters (the methods in turn, rank and targets as configured,
/// random non-zero updates) with their own heads on one backbone, and a batch whose examples go to the tasks in turn,
/// against the deployment without sharing: each task's adapter merged into its own ViT, each model running its
/// task's examples. Both process the same images per step.
/// </summary>
public static class MultiAdapterPerf
{
    public static MultiAdapterPerfReport Run(PerfOptions o, int tasks)
    {
        if (tasks < 1) throw new PeftSharpException("multi_adapter", $"expected at least one task, got {tasks}");
        if (o.Batch < tasks) throw new PeftSharpException("batch", $"a batch of {o.Batch} cannot hold an example of each of {tasks} tasks");
        var methods = o.Methods.Count > 0 ? o.Methods : ["lora"];
        var config = o.Model with { DropPathRate = 0 };
        using var scope = NewDisposeScope();
        var backbone = Backbone(config, o);
        var shared = new MultiAdapterModel(backbone);
        var perTask = new List<VisionTransformer>();
        for (int t = 0; t < tasks; t++)
        {
            string method = methods[t % methods.Count];
            var vit = Backbone(config, o);
            vit.ResetClassifier(10 + t);   // tasks differ in their classes too
            vit.to(o.Device);
            var peft = PeftModel.Create(vit, method, o.SettingsFor(method));
            manual_seed(100 + t);
            using (no_grad()) foreach (var (_, p) in peft.TrainableParameters()) p.add_(randn_like(p) * 0.02);
            shared.AddAdapter($"task{t}", peft);
            perTask.Add(peft.MergeAndUnload<VisionTransformer>());
        }
        shared.to(o.Device);

        manual_seed(0);
        var images = randn(o.Batch, config.InChans, config.ImgSize, config.ImgSize, device: o.Device);
        var names = Enumerable.Range(0, o.Batch).Select(i => $"task{i % tasks}").ToList();
        var own = Enumerable.Range(0, tasks)
            .Select(t => images.index_select(0, tensor(Enumerable.Range(0, o.Batch).Where(i => i % tasks == t).Select(i => (long)i).ToArray(), device: o.Device)))
            .ToList();
        foreach (var m in perTask) m.eval();
        shared.eval();
        Action mixed = () =>
        {
            using var step = NativeHeap.StepScope();
            using var _ = inference_mode();
            shared.Forward(images, names);
        };
        Action separate = () =>
        {
            using var step = NativeHeap.StepScope();
            using var _ = inference_mode();
            for (int t = 0; t < tasks; t++) perTask[t].forward(own[t]);
        };
        var rates = PerfBenchmark.Rates(o, mixed, separate);
        long sharedParams = shared.parameters().Sum(p => p.numel()) + shared.buffers().Sum(b => b.numel());
        long perTaskParams = perTask.Sum(m => m.parameters().Sum(p => p.numel()));
        foreach (var m in perTask) m.Dispose();
        shared.Dispose();
        return new MultiAdapterPerfReport(config, o.Batch, tasks, methods.Take(tasks).ToList(), get_num_threads(), rates[0], rates[1], sharedParams, perTaskParams);
    }

    /// <summary>The same frozen weights every time (the same seed before construction): every task's base is the backbone.</summary>
    static VisionTransformer Backbone(VitConfig config, PerfOptions o)
    {
        manual_seed(0);
        var vit = new VisionTransformer(config);
        vit.to(o.Device);
        return vit;
    }
}
