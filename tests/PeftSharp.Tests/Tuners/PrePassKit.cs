using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Tests.Training;
using PeftSharp.Training;
using PeftSharp.Tuners;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Tests.Tuners;

/// <summary>The tiny task and backbone for methods with a pre-pass (SCT, GPS): a training loader, a ViT-B/16 without
/// weights for parameter counts, and a method's loss over a few dozen steps with the head frozen.</summary>
public static class PrePassKit
{
    static readonly Lazy<string> Task = new(() => TinyVtab.Create());

    public static DataLoader Loader(string split = "train800", bool shuffle = true, int batch = 16) =>
        new(VtabTask.Open(Task.Value).Split(split), new DataLoaderOptions { ImageSize = 32, BatchSize = batch, Shuffle = shuffle, Seed = 3 });

    public static VisionTransformer Backbone(int classes = 4)
    {
        manual_seed(17);
        return new BackboneSpec(null, null, TinyVtab.Backbone).Load(classes, 0, out _);
    }

    public static TrainOptions Options(int epochs = 3, double lr = 3e-3) =>
        new() { Epochs = epochs, Lr = lr, WarmupEpochs = 0, BatchSize = 16, DropPath = 0 };

    public static long VitBaseCount(string method, params string[] sets)
    {
        using var model = new VisionTransformer(VitPresets.Get("vit_base_patch16_224") with { NumClasses = 10 });
        return PeftModel.Create(model, method, TunerRegistry.ParseSettings(sets)).CountTrainable();
    }

    /// <summary>Loss before and after <paramref name="steps"/> AdamW steps on a fixed synthetic batch, the head frozen
    /// (so only the method can lower it).</summary>
    public static (double Before, double After) LossOverSteps(string method, int steps = 30, double lr = 1e-2, params string[] sets)
    {
        manual_seed(1);
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method, TunerRegistry.ParseSettings(sets), new PeftOptions { TrainHead = false });
        var (x, y) = TunerTestKit.Batch();
        double before = TunerTestKit.EvalLoss(model, x, y);
        TunerTestKit.Train(peft, x, y, steps, lr);
        return (before, TunerTestKit.EvalLoss(model, x, y));
    }
}
