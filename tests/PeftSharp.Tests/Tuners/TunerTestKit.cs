using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Tuners;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>A small "pretrained" ViT (the timm parity fixture) and a fixed batch, for method behaviour tests.</summary>
public static class TunerTestKit
{
    public static VisionTransformer Backbone() => ModelCheckpoints.LoadVit(TestFiles.VitCheckpoint).Model;

    /// <summary>Settings a method needs on this 64-wide backbone, where its defaults (sized for ViT-B) do not fit:
    /// SCT's 96 salient channels exceed the width.</summary>
    public static IReadOnlyDictionary<string, string>? SettingsFor(string method) =>
        method.Split('+').Contains("sct") ? new Dictionary<string, string> { ["sct.channels"] = "16" } : null;

    public static (Tensor Images, Tensor Labels) Batch(int size = 8, int seed = 11)
    {
        var g = new Generator((ulong)seed);
        return (randn(new long[] { size, 3, 32, 32 }, generator: g), randint(0, 10, new long[] { size }, generator: g));
    }

    public static Tensor EvalLogits(nn.Module model, Tensor images)
    {
        model.eval();
        using var _ = no_grad();
        return ((nn.Module<Tensor, Tensor>)model).forward(images);
    }

    public static double EvalLoss(nn.Module model, Tensor images, Tensor labels)
    {
        model.eval();
        using var _ = no_grad();
        return F.cross_entropy(((nn.Module<Tensor, Tensor>)model).forward(images), labels).item<float>();
    }

    /// <summary>A few AdamW steps on the trainable parameters only, in training mode.</summary>
    public static void Train(PeftModel peft, Tensor images, Tensor labels, int steps = 8, double lr = 1e-2)
    {
        var parameters = peft.TrainableParameters().Select(p => p.Parameter).ToList();
        var optimizer = optim.AdamW(parameters, lr: lr, weight_decay: 0);
        var model = (nn.Module<Tensor, Tensor>)peft.Root;
        model.train();
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            F.cross_entropy(model.forward(images), labels).backward();
            optimizer.step();
        }
        model.eval();
    }

    public static Dictionary<string, Tensor> Snapshot(IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters) =>
        parameters.ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
}
