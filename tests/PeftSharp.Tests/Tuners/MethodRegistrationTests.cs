using System.Text.Json.Nodes;
using PeftSharp.Benchmarks;
using PeftSharp.Cli;
using PeftSharp.Cli.Commands;
using PeftSharp.Studies;
using PeftSharp.Tuners;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Tuners;

/// <summary>Adding a method is its class and one registration: nothing else names it, yet it shows everywhere.</summary>
public sealed class MethodRegistrationTests
{
    /// <summary>A method only this test knows: the biases of the last k blocks train.</summary>
    sealed class LastBlockBiases : TunerMethod
    {
        public override string Id => "test-last-biases";
        public override string Summary => "the biases of the last k blocks (a test-only method)";
        public override bool Mergeable => true;
        public override IReadOnlyList<HyperSpec> Hypers => [HyperSpec.Int("k", 1, [1, 2], "blocks from the end whose biases train")];
        public override CapacityKnob? Capacity => new("k", ["1", "2"], ["1", "2", "3"]);

        public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h)
        {
            int depth = encoder.BackboneParameters().Select(p => p.Name.Split('.')).Where(n => n[0] == "blocks").Max(n => int.Parse(n[1])) + 1;
            int first = depth - h.Int("k");
            return new SelectionTuner(this, h, encoder, encoder.BackboneParameters()
                .Where(p => p.Name.Split('.') is ["blocks", var b, .., var last] && int.Parse(b) >= first && last == "bias").Select(p => p.Parameter));
        }
    }

    [Fact]
    public void A_registered_method_appears_in_methods_the_bench_grid_the_capacity_study_and_adapter_files()
    {
        using (TunerRegistry.Register(new LastBlockBiases()))
        {
            // `methods` knows it, with its count: k = 1 on ViT-Ti (width 192, MLP 768) is the last block's biases:
            // norm1 192 + qkv 576 + proj 192 + norm2 192 + fc1 768 + fc2 192 = 2,112.
            var output = new StringWriter();
            var console = Console.Out;
            Console.SetOut(output);
            try { Assert.Equal(0, new MethodsCommand().Run(new CommandLine("methods", ["--model", "vit_tiny_patch4_32", "--method", "test-last-biases", "--json"], ["help", "json"]))); }
            finally { Console.SetOut(console); }
            var row = JsonNode.Parse(output.ToString())!.AsArray().Single(r => r!["method"]!.GetValue<string>() == "test-last-biases");
            Assert.Equal(2112, row!["trainable_params"]!.GetValue<long>());

            // The bench's short profiles search its knob; the full capacity study grows it.
            Assert.Equal(["1", "2"], BenchProfile.CapacityKnobs["test-last-biases"]["k"]);
            Assert.Contains("test-last-biases", BenchProfile.Full.Methods);
            Assert.Equal(["1", "2", "3"], CapacityStudy.Profile("full").Knobs["test-last-biases"].Values);

            // Adapter files round-trip it: the reloaded model computes what the trained one does.
            var (x, y) = TunerTestKit.Batch();
            var peft = PeftModel.Create(TunerTestKit.Backbone(), "test-last-biases", new Dictionary<string, string> { ["k"] = "2" });
            TunerTestKit.Train(peft, x, y, steps: 4);
            string dir = TestFiles.TempDir("peftsharp-registered");
            AdapterFiles.Save(peft, dir);
            var reloaded = AdapterFiles.Load(TunerTestKit.Backbone(), dir);
            Assert.Equal("test-last-biases", reloaded.MethodSpec);
            TensorAssert.Close(TunerTestKit.EvalLogits(peft.Vit, x), TunerTestKit.EvalLogits(reloaded.Vit, x), 1e-6);
            Directory.Delete(dir, recursive: true);
        }
        Assert.DoesNotContain(TunerRegistry.All, m => m.Id == "test-last-biases");
        Assert.Contains("already registered", Assert.Throws<PeftSharpException>(() => TunerRegistry.Register(new Duplicate())).Message);
    }

    sealed class Duplicate : TunerMethod
    {
        public override string Id => "lora";
        public override string Summary => "";
        public override bool Mergeable => false;
        public override AppliedTuner Apply(TunableEncoder encoder, Hyperparameters h) => throw new NotSupportedException();
    }
}
