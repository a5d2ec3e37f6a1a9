using PeftSharp.Checkpoints;

namespace PeftSharp.Cli.Commands;

/// <summary>A VideoMAE .pth checkpoint to a safetensors file with its architecture in the metadata.</summary>
public sealed class ConvertCommand : ICommand
{
    public string Name => "convert";
    public string Summary => "convert a VideoMAE .pth checkpoint (fine-tuning or pretraining) to safetensors";
    public string Usage => """
        peftsharp convert --videomae IN.pth --out OUT.safetensors [--size PX] [--frames N]
          Reads a torch.save file (the state dict at the top or under 'module', 'model' or 'state_dict'; a
          pretraining checkpoint's 'encoder.' tensors, its decoder dropped) into the video ViT and writes it under
          VideoMAE's names with the architecture as metadata. The architecture comes from the tensors (heads 64
          wide, as every VideoMAE model) and the checkpoint's training args; --size and --frames where the args do
          not record input_size and num_frames. A key the model does not have is an error naming it. Training
          commands also read the .pth directly (--checkpoint).
        """;

    public int Run(CommandLine line)
    {
        string input = line.Require("videomae"), output = line.Require("out");
        int? size = line.Get("size") is null ? null : line.Int("size", 0), frames = line.Get("frames") is null ? null : line.Int("frames", 0);
        line.RejectUnknown();
        if (!output.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new PeftSharpException($"convert: --out {output}: expected a .safetensors file name");
        var config = VideoCheckpoints.ReadConfig(input, size, frames);
        var loaded = VideoCheckpoints.LoadVideoMae(input, config);
        using var model = loaded.Model;
        VideoCheckpoints.SaveVideoMae(output, model, new Dictionary<string, string> { ["converted_from"] = Path.GetFileName(input) });
        var c = model.Config;
        Console.WriteLine($"{output}: {loaded.Report.Loaded.Count} tensors from {input} (embed_dim {c.EmbedDim}, depth {c.Depth}, {c.NumHeads} heads, {c.NumFrames} frames of {c.ImgSize} px in tubelets of {c.TubeletSize}, {c.NumClasses} classes{(loaded.Report.Missing.Count > 0 ? $"; new: {string.Join(", ", loaded.Report.Missing)}" : "")})");
        return 0;
    }
}
