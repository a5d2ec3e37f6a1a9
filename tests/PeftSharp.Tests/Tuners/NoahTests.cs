using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>NOAH (Zhang, Zhou, Liu 2022): a subnet's block against the authors' formula, the count as a function of
/// the subnet (the authors' published Caltech101 subnet), the evolutionary search's bookkeeping, the pre-pass (supernet
/// and search on the training split only), training, errors.</summary>
public class NoahTests
{
    static Dictionary<string, long[]> Dims(int[] p, int[] r, int[] a) =>
        Enumerable.Range(0, p.Length).ToDictionary(i => $"blocks.{i}.noah.dims", i => new long[] { p[i], r[i], a[i] });

    static PeftModel WithSubnet(VisionTransformer model, Dictionary<string, long[]> dims, params string[] sets)
    {
        var peft = PeftModel.Create(model, "noah", TunerRegistry.ParseSettings(sets));
        Assert.True(peft.RestoreSelection(name => tensor(dims[name]), "hand-written subnet"));
        return peft;
    }

    [Fact]
    public void Count_is_768p_plus_3072r_plus_1537a_plus_768_per_block_on_vit_b16()
    {
        using var model = new VisionTransformer(VitPresets.Get("vit_base_patch16_224") with { NumClasses = 10 });
        var peft = PeftModel.Create(model, "noah");
        // Until searched: every block at width 5 for each module.
        Assert.Equal(12L * (768 * 5 + 3072 * 5 + 1537 * 5 + 768), peft.CountTrainable());
        // The authors' searched subnet for Caltech101 (experiments/NOAH/subnet/VTAB/ViT-B_prompt_caltech101.yaml):
        // Σp = 65, Σr = 83, Σa = 73 over 12 adapters → 768·65 + 3072·83 + 1537·73 + 768·12 = 426,313 (V-PETL: 0.43M).
        int[] p = { 5, 10, 1, 5, 10, 1, 10, 1, 10, 1, 10, 1 }, r = { 1, 10, 10, 10, 5, 10, 10, 10, 5, 1, 10, 1 }, a = { 10, 1, 5, 10, 10, 1, 5, 5, 10, 1, 5, 10 };
        Assert.True(peft.RestoreSelection(name => tensor(Dims(p, r, a)[name]), "caltech101 subnet"));
        Assert.Equal(426_313L, peft.CountTrainable());
        Assert.Equal(426_313L, ((NoahApplied)peft.Tuners.Single()).Space.Params(new NoahSubnet(p, r, a)));
    }

    [Fact]
    public void A_subnet_block_is_prompts_in_lora_on_qkv_and_the_adapter_after_the_mlp_branch()
    {
        manual_seed(8);
        using var plain = TunerTestKit.Backbone();
        using var model = TunerTestKit.Backbone();
        WithSubnet(model, Dims(new[] { 2, 0 }, new[] { 3, 0 }, new[] { 4, 2 }));
        NewMethodKit.Randomize(model, "noah", std: 0.1);
        NewMethodKit.Randomize(model, "attn.qkv.lora", std: 0.1);
        model.eval();
        plain.eval();
        var x = randn(2, 17, 64);   // class token + 16 patches
        Tensor P(string name) => model.named_parameters().Single(q => q.name == name).parameter.detach();
        Tensor Adapter(string block, Tensor y)
        {
            var h = y.matmul(P($"{block}.noah.adapter.ln1.weight").t()) + P($"{block}.noah.adapter.ln1.bias");
            h = h * sigmoid(1.702 * h);
            return y + h.matmul(P($"{block}.noah.adapter.ln2.weight").t()) + P($"{block}.noah.adapter.ln2.bias");
        }
        using var _ = no_grad();
        // Block 0 by hand: its two prompts after the class token; qkv with W + B·A; the adapter on the MLP branch.
        var b0 = plain.blocks[0];
        ((Linear)b0.attn.qkv).weight!.add_(P("blocks.0.attn.qkv.lora.lora_B.weight").matmul(P("blocks.0.attn.qkv.lora.lora_A.weight")));
        var xp = cat(new[] { x[.., ..1], P("blocks.0.noah.prompt.tokens").unsqueeze(0).expand(2, -1, -1), x[.., 1..] }, 1);
        var h0 = xp + b0.attn.forward(b0.norm1.forward(xp));
        var expected0 = h0 + Adapter("blocks.0", b0.mlp.forward(b0.norm2.forward(h0)));
        var layout = new TokenLayout(1, 4, 4);
        var actual0 = model.blocks[0].forward(x, layout, null);
        TensorAssert.Close(expected0, actual0, atol: 1e-5, rtol: 1e-4, what: "block 0");
        Assert.Equal(2, layout.Prompts);
        // Block 1 has no prompts of its own: block 0's stay; no LoRA; its own adapter.
        var b1 = plain.blocks[1];
        var h1 = expected0 + b1.attn.forward(b1.norm1.forward(expected0));
        var expected1 = h1 + Adapter("blocks.1", b1.mlp.forward(b1.norm2.forward(h1)));
        TensorAssert.Close(expected1, model.blocks[1].forward(actual0, layout, null), atol: 1e-5, rtol: 1e-4, what: "block 1");
        Assert.Null(((NoahQkv)model.blocks[1].attn.qkv).Lora);
    }

    [Fact]
    public void The_search_scores_each_legal_subnet_once_and_returns_the_best()
    {
        // Two blocks, widths {1, 2}, depths {1, 2}: six choices per module type, 216 subnets. A fixed score per subnet.
        var space = NoahSpace.Of(2, 8, new[] { 1, 2 });
        Assert.Equal(new[] { 1, 2 }, space.Depths);
        var order = Subnets(space).Select((s, i) => (s.Key, Score: (i * 97) % 216 / 2.16)).ToDictionary(e => e.Key, e => e.Score);
        double Score(NoahSubnet s) => order[s.Key];   // distinct for every subnet
        var seen = new List<NoahSubnet>();
        long limit = space.Params(new NoahSubnet(new[] { 2, 2 }, new[] { 2, 1 }, new[] { 1, 1 }));
        var result = NoahSearch.Run(space, limit, s => { seen.Add(s); return Score(s); }, new Random(3), population: 50, generations: 15);
        Assert.Equal(seen.Count, seen.Select(s => s.Key).Distinct().Count());
        Assert.All(seen, s =>
        {
            Assert.True(space.Params(s) <= limit);
            foreach (var dims in new[] { s.Prompts, s.Lora, s.Adapter })
            {
                int depth = Array.IndexOf(dims, 0) is var z && z >= 0 ? z : 2;
                Assert.Contains(depth, space.Depths);
                Assert.All(dims.Take(depth), w => Assert.Contains(w, space.Widths));
                Assert.All(dims.Skip(depth), w => Assert.Equal(0, w));
            }
        });
        // In so small a space the search scores every legal subnet, so its choice is the best of them.
        var legal = Subnets(space).Where(s => space.Params(s) <= limit).ToList();
        Assert.Equal(legal.Count, seen.Count);
        var best = legal.OrderByDescending(Score).ThenBy(space.Params).First();
        Assert.Equal(best.Key, result.Best.Key);
        Assert.Equal(Score(best), result.Score);
    }

    static IEnumerable<NoahSubnet> Subnets(NoahSpace space)
    {
        var options = new List<int[]> { new[] { 1, 0 }, new[] { 2, 0 }, new[] { 1, 1 }, new[] { 1, 2 }, new[] { 2, 1 }, new[] { 2, 2 } };
        return from p in options from r in options from a in options select new NoahSubnet(p, r, a);
    }

    [Fact]
    public void Pre_pass_trains_a_supernet_and_searches_on_the_training_split_then_builds_the_chosen_subnet()
    {
        using var train = PrePassKit.Loader();
        using var model = PrePassKit.Backbone();
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var peft = PeftModel.Create(model, "noah", TunerRegistry.ParseSettings(new[]
            { "widths=1,2,4", "limit=3000", "supernet_epochs=2", "population=6", "generations=2" }));
        Assert.True(peft.NeedsPrePass);
        peft.RunPrePasses(new PrePassData(train, CPU, 3));
        Assert.False(peft.NeedsPrePass);
        var noah = (NoahApplied)peft.Tuners.Single();
        // The head trained with the supernet is put back; the backbone never moved.
        foreach (var (name, p) in model.named_parameters().Where(p => before.ContainsKey(p.name)))
            TensorAssert.Identical(before[name], p, name);
        Assert.InRange(noah.Space.Params(noah.Subnet), 1, 3000);
        Assert.Equal(noah.Space.Params(noah.Subnet), peft.CountTrainable());
        var dims = peft.SelectionState().ToDictionary(s => s.Name, s => s.Tensor.data<long>().ToArray());
        Assert.Equal(new long[] { noah.Subnet.Prompts[1], noah.Subnet.Lora[1], noah.Subnet.Adapter[1] }, dims["blocks.1.noah.dims"]);
        Assert.True(noah.PrePassMetrics["noah_subnets_scored"] >= 6);
        Assert.All(peft.TrainableParameters(), p => Assert.True(p.Parameter.requires_grad));

        // The subnet trains, and adapter files rebuild it.
        var result = new Trainer(peft, PrePassKit.Options(epochs: 2, lr: 1e-2), CPU).Fit(train);
        Assert.Equal(0, result.PrePassSeconds);   // already selected: nothing ran
        var (x, _) = TunerTestKit.Batch();
        var logits = TunerTestKit.EvalLogits(model, x);
        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, dir);
        using var fresh = PrePassKit.Backbone();
        var loaded = AdapterFiles.Load(fresh, dir);
        Assert.False(loaded.NeedsPrePass);
        TensorAssert.Identical(logits, TunerTestKit.EvalLogits(fresh, x), "noah reloaded");
    }

    [Fact]
    public void Trains_alone_loss_falls_clearly() => NewMethodKit.AssertTrains("noah");

    [Theory]
    [InlineData("limit=100", "'limit' = 100 is smaller than the smallest subnet (")]
    [InlineData("widths=0,5", "'widths' must be positive integers, got '0'")]
    [InlineData("supernet_epochs=0", "'supernet_epochs' must be >= 1, got 0")]
    public void Bad_hyperparameters_are_one_line(string set, string expected)
    {
        var e = NewMethodKit.BadSetting("noah", set);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Refuses_gradient_checkpointing_with_one_line() => NewMethodKit.RefusesGradientCheckpointing("noah");
}
