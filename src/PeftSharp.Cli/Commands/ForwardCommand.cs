using PeftSharp.Checkpoints;
using PeftSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace PeftSharp.Cli.Commands;

/// <summary>Runs a ViT in eval mode on the tensor 'input' of a safetensors file and writes logits, pre_logits, tokens.</summary>
public sealed class ForwardCommand : ICommand
{
    public string Name => "forward";
    public string Summary => "run a ViT checkpoint on an input tensor, write logits/pre_logits/tokens";
    public string Usage => """
        peftsharp forward --checkpoint W.safetensors --input IO.safetensors --output OUT.safetensors
                          [--model PRESET] [--config JSON|FILE] [--device cpu|cuda]
          The tensor 'input' of IO ([B, C, H, W], float) is run through the model in eval mode; OUT gets
          'logits', 'pre_logits' and 'tokens'. Without --model/--config the architecture comes from the
          checkpoint's 'config' metadata (timm kwargs), else from its tensor shapes.
        """;

    public int Run(CommandLine line)
    {
        string checkpoint = line.Require("checkpoint"), input = line.Require("input"), output = line.Require("output");
        var config = VitConfig.Resolve(line.Get("model"), line.Get("config"));
        var device = Devices.Parse(line.Get("device"));
        line.RejectUnknown();

        var loaded = ModelCheckpoints.LoadVit(checkpoint, config);
        using var model = loaded.Model;
        model.to(device);
        model.eval();
        using var io = SafeTensorsFile.Open(input);
        if (!io.Contains("input"))
            throw new PeftSharpException($"{input}: no tensor named 'input' (has: {string.Join(", ", io.Tensors.Select(t => t.Name))})");
        using var x = io.ReadTensor("input").to(float32).to(device);

        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var tokens = model.ForwardFeatures(x, out var layout);
        var preLogits = model.ForwardHead(tokens, layout, preLogits: true);
        var logits = model.head.forward(preLogits);
        SafeTensors.Save(output, new Dictionary<string, Tensor>
        {
            ["logits"] = logits.cpu(), ["pre_logits"] = preLogits.cpu(), ["tokens"] = tokens.cpu(),
        }, new Dictionary<string, string> { ["config"] = model.Config.ToJson(), ["checkpoint"] = Path.GetFileName(checkpoint) });
        Console.WriteLine($"{output}: logits [{string.Join(", ", logits.shape)}], pre_logits [{string.Join(", ", preLogits.shape)}], tokens [{string.Join(", ", tokens.shape)}] ({loaded.Convention} keys, config {loaded.ConfigSource})");
        return 0;
    }
}
