using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using PeftSharp.Export;
using PeftSharp.Interop;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Benchmarks;

/// <summary>Inference images/s of one merged ViT in PeftSharp and in ONNX Runtime (its exported file), same batch, same
/// threads, timed alternately in one process.</summary>
public sealed record OnnxRuntimePerfReport(VitConfig Model, string Method, int Batch, int Threads, double OursImagesPerSecond,
                                           double OnnxRuntimeImagesPerSecond, string OnnxRuntimeVersion)
{
    public double Ratio => OursImagesPerSecond / OnnxRuntimeImagesPerSecond;

    public JsonObject ToJson() => new()
    {
        ["model"] = JsonNode.Parse(Model.ToJson()), ["method"] = Method, ["batch"] = Batch, ["threads"] = Threads,
        ["peftsharp_images_per_s"] = Math.Round(OursImagesPerSecond, 2),
        ["onnxruntime_images_per_s"] = Math.Round(OnnxRuntimeImagesPerSecond, 2),
        ["peftsharp_vs_onnxruntime"] = Math.Round(Ratio, 3), ["onnxruntime_version"] = OnnxRuntimeVersion,
    };
}

/// <summary>
/// The deployment comparison: a ViT with <c>method</c> applied (random non-zero update) and merged, run by us
/// (inference mode) and exported with <see cref="OnnxExport"/> and run by ONNX Runtime's CPU provider (all graph
/// optimisations, as many intra-op threads as libtorch has, sequential execution, the same thread wait policy).
/// Both are given the same batch.
/// </summary>
public static class OnnxRuntimePerf
{
    public static OnnxRuntimePerfReport Run(PerfOptions o, string method = "lora")
    {
        if (o.Device.type != DeviceType.CPU)
            throw new PeftSharpException("device", "the ONNX Runtime comparison runs on the CPU (ONNX Runtime's CPU provider)");
        var config = o.Model with { DropPathRate = 0 };
        string dir = Path.Combine(Path.GetTempPath(), $"peftsharp-ort-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            manual_seed(0);
            using var vit = new VisionTransformer(config);
            var peft = PeftModel.Create(vit, method, o.SettingsFor(method));
            if (!peft.Mergeable) throw new PeftSharpException("methods", $"'{method}' does not merge; the comparison runs a merged model");
            using (no_grad()) foreach (var (_, p) in peft.TrainableParameters()) p.add_(randn_like(p) * 0.02);
            var model = peft.MergeAndUnload<VisionTransformer>();
            model.eval();
            string path = Path.Combine(dir, "model.onnx");
            OnnxExport.Save(model, path);

            using var images = randn(o.Batch, config.InChans, config.ImgSize, config.ImgSize);
            var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(images.data<float>().ToArray(), images.shape.Select(d => (int)d).ToArray());
            using var sessionOptions = new SessionOptions
            {
                IntraOpNumThreads = get_num_threads(), InterOpNumThreads = 1,
                ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            };
            // ONNX Runtime's threads wait as libtorch's do (OpenMpWait): they spin only when OMP_WAIT_POLICY is ACTIVE.
            // On a shared machine a spinning waiter burns the time slice its partner needs.
            bool spin = string.Equals(Environment.GetEnvironmentVariable(OpenMpWait.Variable), "ACTIVE", StringComparison.OrdinalIgnoreCase);
            sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", spin ? "1" : "0");
            using var session = new InferenceSession(path, sessionOptions);
            var inputs = new[] { NamedOnnxValue.CreateFromTensor(OnnxExport.InputName, input) };
            Action ours = () =>
            {
                using var step = NativeHeap.StepScope();
                using var _ = inference_mode();
                model.forward(images);
            };
            Action onnxRuntime = () =>
            {
                using var results = session.Run(inputs);
            };
            var rates = PerfBenchmark.Rates(o, ours, onnxRuntime);
            return new OnnxRuntimePerfReport(config, method, o.Batch, get_num_threads(), rates[0], rates[1],
                                             typeof(InferenceSession).Assembly.GetName().Version?.ToString() ?? "?");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
