using PeftSharp.Checkpoints;
using PeftSharp.Models;
using PeftSharp.Training;
using PeftSharp.Tuners;
using PeftSharp.Tuners.Methods;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeftSharp.Tests.Tuners;

/// <summary>SPT-LoRA and SPT-Adapter (He et al., ICCV 2023): the budget allocation on a case worked by hand, each
/// layer's formula, the sensitivity pre-pass against an independent transcription, the count as a function of the
/// budget, sparse training (an unselected weight never moves), sparse adapter files, the merge, errors.</summary>
public class SptTests
{
    // ---------------- allocation ----------------

    /// <summary>Two matrices (16 entries, structured module 8 parameters; 8 entries, module 6) and two vectors (4, 2),
    /// α = β = 2, the class token 1. Sorted sensitivities 9 8 7 6 | 5 | 4 3 | 2 | 0.5, so selecting the top τ gives
    /// totals 2 3 4 | 9 (M1 structured at 4 ≥ 8/2) | 10 | 11 | 14 (V1 whole at 2 ≥ 4/2) | 16 (V2 whole) | 17 | … 21.</summary>
    static (List<SptCandidate>, List<Tensor>) HandCase() =>
    (
        new List<SptCandidate> { new("M1", 16, 8), new("M2", 8, 6), new("V1", 4, 0), new("V2", 2, 0) },
        new List<Tensor>
        {
            tensor(new float[] { 9, 0, 8, 0, 7, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0 }).reshape(4, 4),
            tensor(new float[] { 0, 5, 0, 0.5f, 0, 0, 0, 0 }).reshape(2, 4),
            tensor(new float[] { 0, 4, 3, 0 }),
            tensor(new float[] { 0, 2 }),
        }
    );

    static long[] Entries(SptChoice c) => c.Entries.data<long>().ToArray();

    [Fact]
    public void Allocation_takes_the_threshold_whose_total_is_closest_to_the_budget()
    {
        var (candidates, sensitivity) = HandCase();
        // Budget 12: 11 (τ = 6) is closer than 14: M1 structured, M2 keeps entry 1, V1 entry 1, V2 nothing.
        var (choices, total) = SptAllocation.BySensitivity(candidates, sensitivity, 12, 2, 2, 1);
        Assert.Equal(11, total);
        Assert.True(choices[0].Structured);
        Assert.Equal(new long[] { 1 }, Entries(choices[1]));
        Assert.Equal(new long[] { 1 }, Entries(choices[2]));
        Assert.Empty(Entries(choices[3]));
        // Budget 13: 14 (τ = 7) is closer than 11: V1 trains whole.
        (choices, total) = SptAllocation.BySensitivity(candidates, sensitivity, 13, 2, 2, 1);
        Assert.Equal(14, total);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, Entries(choices[2]));
        Assert.False(choices[2].Structured);
        // Budget 5: 4 (τ = 3) beats 9: M1 keeps its three largest entries, sparse.
        (choices, total) = SptAllocation.BySensitivity(candidates, sensitivity, 5, 2, 2, 1);
        Assert.Equal(4, total);
        Assert.False(choices[0].Structured);
        Assert.Equal(new long[] { 0, 2, 4 }, Entries(choices[0]));
        // A tie (budget 6.5 between 4 and 9 is not an integer; budget 10 is met exactly): the exact count.
        (_, total) = SptAllocation.BySensitivity(candidates, sensitivity, 10, 2, 2, 1);
        Assert.Equal(10, total);
        // Above everything: all of it (21).
        (_, total) = SptAllocation.BySensitivity(candidates, sensitivity, 1000, 2, 2, 1);
        Assert.Equal(21, total);
    }

    [Fact]
    public void Allocation_without_data_fills_the_candidates_in_order()
    {
        var (candidates, _) = HandCase();
        // In order: M1 structured from its 4th entry (total 9), M2's entries add 10, 11, then M2 structured (15).
        var (choices, total) = SptAllocation.InOrder(candidates, 12, 2, 2, 1);
        Assert.Equal(11, total);
        Assert.True(choices[0].Structured);
        Assert.Equal(new long[] { 0, 1 }, Entries(choices[1]));
        Assert.Empty(Entries(choices[2]));
        (_, total) = SptAllocation.InOrder(candidates, 14, 2, 2, 1);
        Assert.Equal(15, total);
    }

    // ---------------- the layers ----------------

    /// <summary>A selection written by hand into a fresh SPT model of the tiny backbone, then random trained values.</summary>
    static (VisionTransformer Model, PeftModel Peft) WithSelection(string method, Dictionary<string, long[]> selection)
    {
        manual_seed(7);
        var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, method, TunerRegistry.ParseSettings(new[] { "budget=5000", "rank=3" }));
        var empty = peft.SelectionState().ToDictionary(s => s.Name, s => s.Name.EndsWith("spt_structured") ? new long[s.Tensor.shape[0]] : Array.Empty<long>());
        foreach (var (k, v) in selection) empty[k] = v;
        Assert.True(peft.RestoreSelection(name => tensor(empty[name]), "hand-written selection"));
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("spt_") || name.Contains("structured")) p.normal_(0, 0.1);
        model.eval();
        return (model, peft);
    }

    static Tensor P(nn.Module model, string name) => model.named_parameters().Single(p => p.name == name).parameter.detach();
    static Tensor B(nn.Module model, string name) => model.named_buffers().Single(p => p.name == name).buffer;

    static Tensor WithEntries(Tensor @base, long[] index, Tensor delta)
    {
        var flat = @base.clone().flatten();
        for (int i = 0; i < index.Length; i++) flat[index[i]] += delta[i];
        return flat.view_as(@base);
    }

    [Fact]
    public void Spt_lora_qkv_adds_the_entries_to_w_and_b_and_lora_to_the_k_rows()
    {
        const string qkv = "blocks.0.attn.qkv";
        long[] entries = { 3, 64 * 64 + 5, 2 * 64 * 64 + 100, 3 * 64 * 64 - 1 }, biasEntries = { 0, 130 };
        var (model, _) = WithSelection("spt-lora", new()
        {
            [$"{qkv}.spt_structured"] = new long[] { 0, 1, 0 }, [$"{qkv}.spt_weight.index"] = entries, [$"{qkv}.spt_bias.index"] = biasEntries,
        });
        using var _m = model;
        var x = randn(2, 5, 64);
        var w = WithEntries(P(model, $"{qkv}.base_layer.weight"), entries, P(model, $"{qkv}.spt_weight.delta"));
        var b = WithEntries(P(model, $"{qkv}.base_layer.bias"), biasEntries, P(model, $"{qkv}.spt_bias.delta"));
        var expected = x.matmul(w.t()) + b;
        var lora = x.matmul(P(model, $"{qkv}.structured_k.lora_A.weight").t()).matmul(P(model, $"{qkv}.structured_k.lora_B.weight").t());
        expected[.., .., 64..128] += lora;
        using var _ = no_grad();
        TensorAssert.Close(expected, ((nn.Module<Tensor, Tensor>)model.blocks[0].attn.qkv).forward(x), atol: 1e-5, what: "spt-lora qkv");
    }

    [Fact]
    public void Spt_adapter_is_sequential_on_fc1s_output_and_reads_projs_input_and_the_norm_takes_its_entries()
    {
        var (model, _) = WithSelection("spt-adapter", new()
        {
            ["blocks.1.mlp.fc1.spt_structured"] = new long[] { 1 }, ["blocks.1.attn.proj.spt_structured"] = new long[] { 1 },
            ["blocks.1.norm2.spt_weight.index"] = new long[] { 2, 40 }, ["blocks.1.norm2.spt_bias.index"] = new long[] { 63 },
        });
        using var _m = model;
        var x = randn(2, 5, 64);
        Tensor Adapter(string path, Tensor u) =>
            F.gelu(u.matmul(P(model, $"{path}.down.weight").t()) + P(model, $"{path}.down.bias"))
             .matmul(P(model, $"{path}.up.weight").t()) + P(model, $"{path}.up.bias");
        using var _ = no_grad();
        // fc1: y = W x + b, then y + adapter(y) (the authors' MlpSPTSeq).
        var y = x.matmul(P(model, "blocks.1.mlp.fc1.base_layer.weight").t()) + P(model, "blocks.1.mlp.fc1.base_layer.bias");
        TensorAssert.Close(y + Adapter("blocks.1.mlp.fc1.structured", y), ((nn.Module<Tensor, Tensor>)model.blocks[1].mlp.fc1).forward(x), atol: 1e-5, what: "fc1");
        // proj: W x + b + adapter(x) (the authors' AttentionSPTSeq reads the projection's input).
        var p = x.matmul(P(model, "blocks.1.attn.proj.base_layer.weight").t()) + P(model, "blocks.1.attn.proj.base_layer.bias");
        TensorAssert.Close(p + Adapter("blocks.1.attn.proj.structured", x), ((nn.Module<Tensor, Tensor>)model.blocks[1].attn.proj).forward(x), atol: 1e-5, what: "proj");
        // norm2: the affine's selected entries changed.
        var nw = WithEntries(P(model, "blocks.1.norm2.base_layer.weight"), new long[] { 2, 40 }, P(model, "blocks.1.norm2.spt_weight.delta"));
        var nb = WithEntries(P(model, "blocks.1.norm2.base_layer.bias"), new long[] { 63 }, P(model, "blocks.1.norm2.spt_bias.delta"));
        var normed = (x - x.mean(new long[] { -1 }, keepdim: true)) / (x.var(-1, unbiased: false, keepdim: true) + 1e-6).sqrt();
        TensorAssert.Close(normed * nw + nb, ((nn.Module<Tensor, Tensor>)model.blocks[1].norm2).forward(x), atol: 1e-4, what: "norm2");
    }

    // ---------------- the pre-pass ----------------

    [Fact]
    public void Pre_pass_selects_by_the_summed_squared_cross_entropy_gradient_of_the_training_split()
    {
        const int budget = 6000;
        using var train = PrePassKit.Loader();
        using var model = PrePassKit.Backbone();
        var peft = PeftModel.Create(model, "spt-lora", TunerRegistry.ParseSettings(new[] { $"budget={budget}", "batches=2" }));
        peft.RunPrePasses(new PrePassData(train, CPU, 3));
        Assert.False(peft.NeedsPrePass);
        Assert.All(model.parameters(), p => Assert.Null(p.grad));

        // Independently: a plain copy of the backbone in train mode, batches of 32 in dataset order (two: 32 + 16
        // images), Σ grad² of the mean cross-entropy per weight.
        using var reference = PrePassKit.Backbone();
        reference.train();
        var sums = new Dictionary<string, Tensor>();
        var images = new List<Tensor>();
        var labels = new List<Tensor>();
        foreach (var batch in train.Unaugmented()) using (batch) { images.Add(batch.Images.clone()); labels.Add(batch.Labels.clone()); }
        var all = cat(images.ToArray(), 0);
        var allLabels = cat(labels.ToArray(), 0);
        for (int start = 0; start < all.shape[0]; start += 32)
        {
            int end = (int)Math.Min(start + 32, all.shape[0]);
            F.cross_entropy(reference.forward(all[start..end]), allLabels[start..end]).backward();
            foreach (var (name, p) in reference.named_parameters().Where(p => p.parameter.grad is not null))
            {
                var g2 = p.grad!.pow(2);
                sums[name] = sums.TryGetValue(name, out var s) ? s + g2 : g2;
                p.grad = null;
            }
        }
        // The candidates' sensitivities by name, q/k/v as row sections.
        Tensor Sens(string name)
        {
            foreach (var (section, i) in new[] { ("q", 0), ("k", 1), ("v", 2) })
                if (name.Contains($"qkv.{section}.")) return sums[name.Replace($".{section}.", ".")].narrow(0, i * 64, 64);
            return sums[name];
        }
        var applied = (SptApplied)peft.Tuners.Single();
        var selection = peft.SelectionState().ToDictionary(s => s.Name, s => s.Tensor);
        // The allocation (checked by hand above) on these sensitivities is exactly what the model holds.
        var expected = SptAllocation.BySensitivity(applied.Candidates, applied.Candidates.Select(c => Sens(c.Name)).ToList(), budget, 10, 5, 64);
        for (int i = 0; i < applied.Candidates.Count; i++)
        {
            var c = applied.Candidates[i];
            var (structured, entries) = Held(c, selection);
            Assert.Equal(expected.Choices[i].Structured, structured);
            Assert.Equal(Entries(expected.Choices[i]), entries);
        }
        Assert.Equal(expected.Total, peft.CountTrainable());
        Assert.Equal(applied.Total, peft.CountTrainable());
        Assert.InRange(applied.Total, budget - 2560, budget + 2560);   // within one promotion (fc1's module, 2560)
        Assert.Contains(applied.Candidates.Select((c, i) => expected.Choices[i]), ch => ch.Structured);
        Assert.Contains(applied.Candidates.Select((c, i) => expected.Choices[i]), ch => !ch.Structured && ch.Entries.shape[0] > 0);
    }

    /// <summary>What the model's selection holds of one candidate: its structured flag and its entries (in the
    /// candidate's own flat indexing).</summary>
    static (bool Structured, long[] Entries) Held(SptCandidate c, Dictionary<string, Tensor> selection)
    {
        string layer = c.Name[..c.Name.LastIndexOf('.')], kind = c.Name.EndsWith(".bias") ? "bias" : "weight";
        int section = 0;
        bool sectioned = false;
        foreach (var (s, i) in new[] { ("q", 0), ("k", 1), ("v", 2) })
            if (layer.EndsWith($"qkv.{s}")) (layer, section, sectioned) = (layer[..^2], i, true);
        var all = selection[$"{layer}.spt_{kind}.index"].data<long>().ToArray();
        var entries = sectioned ? all.Where(e => e / c.Size == section).Select(e => e % c.Size).ToArray() : all;
        bool structured = !c.IsVector && selection[$"{layer}.spt_structured"].data<long>()[section] == 1;
        return (structured, entries);
    }

    // ---------------- counts ----------------

    /// <summary>The count from a model's selection, by the reference's formula: the class token + r(in + out) per
    /// structured matrix (LoRA) + every selected entry (sparse entries and whole vectors).</summary>
    static long FormulaCount(PeftModel peft, int rank, long d)
    {
        long count = d;
        var shapes = peft.Root.named_parameters().ToDictionary(p => AdapterFiles.CanonicalName(p.name), p => p.parameter.shape);
        foreach (var (name, t) in peft.SelectionState())
        {
            if (name.EndsWith(".spt_structured"))
            {
                string layer = name[..^".spt_structured".Length];
                var w = shapes[$"{layer}.weight"];
                long rows = w[0] / t.shape[0];
                count += t.sum().item<long>() * rank * (w[1] + rows);
            }
            else count += t.shape[0];
        }
        return count;
    }

    [Fact]
    public void Vit_b16_count_follows_the_formula_and_meets_the_budget_within_one_structured_module()
    {
        using var model = new VisionTransformer(VitPresets.Get("vit_base_patch16_224") with { NumClasses = 10 });
        var peft = PeftModel.Create(model, "spt-lora", TunerRegistry.ParseSettings(new[] { "budget=400000" }));
        long count = peft.CountTrainable();
        Assert.Equal(FormulaCount(peft, 8, 768), count);
        const long largestModule = 8 * (768 + 3072);   // LoRA on fc1 or fc2: the largest step of the total
        Assert.InRange(count, 400_000 - largestModule, 400_000 + largestModule);
        // The authors' other budgets on the same candidates (ViT-B/16: the most SPT-LoRA can tune is 1,449,216: 12 · (4 · 8 · 1536 + 2 · 8 · 3840 + 9984 vector entries) + 1536 + 768).
        var candidates = ((SptApplied)peft.Tuners.Single()).Candidates;
        foreach (int budget in new[] { 200_000, 800_000, 1_000_000 })
            Assert.InRange(SptAllocation.InOrder(candidates, budget, 10, 5, 768).Total, budget - largestModule, budget + largestModule);
        Assert.Equal(1_449_216, ((SptApplied)peft.Tuners.Single()).Most);
    }

    [Fact]
    public void Spt_adapter_counts_r_times_two_out_plus_one_plus_out_per_structured_matrix()
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "spt-adapter", TunerRegistry.ParseSettings(new[] { "budget=100000", "rank=4" }));
        // Everything: every section and matrix structured, every vector whole, the class token.
        long perBlock = 3 * (4 * 64 * 2 + 4 + 64) + (4 * 64 * 2 + 4 + 64) + (4 * 256 * 2 + 4 + 256) + (4 * 64 * 2 + 4 + 64)
                        + 3 * 64 + 64 + 256 + 64 + 4 * 64;
        Assert.Equal(64 + 2 * perBlock + 2 * 64, peft.CountTrainable());
    }

    // ---------------- training, files, merge ----------------

    [Fact]
    public void Trains_loss_falls_clearly()
    {
        var (before, after) = PrePassKit.LossOverSteps("spt-lora", sets: new[] { "budget=8000" });
        Assert.True(after < before - 0.2, $"spt-lora: loss {before:F4} → {after:F4}");
        (before, after) = PrePassKit.LossOverSteps("spt-adapter", sets: new[] { "budget=8000" });
        Assert.True(after < before - 0.2, $"spt-adapter: loss {before:F4} → {after:F4}");
    }

    [Fact]
    public void An_unselected_weight_never_moves_adapter_files_hold_only_the_selection_and_merged_equals_unmerged()
    {
        using var train = PrePassKit.Loader();
        using var model = PrePassKit.Backbone();
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var peft = PeftModel.Create(model, "spt-lora", TunerRegistry.ParseSettings(new[] { "budget=6000", "batches=2" }));
        var result = new Trainer(peft, PrePassKit.Options(epochs: 3, lr: 1e-2), CPU).Fit(train);
        Assert.True(result.PrePassSeconds > 0);
        var fc2 = (SptLinear)model.blocks[1].mlp.fc2;
        TensorAssert.Identical(original["blocks.1.mlp.fc2.weight"], fc2.InnermostLinear.weight!, "frozen fc2 weight");
        Assert.Contains(peft.TrainableParameters(), p => p.Name.EndsWith("spt_weight.delta") && p.Parameter.abs().sum().item<float>() > 0);

        var (x, _) = TunerTestKit.Batch();
        var before = TunerTestKit.EvalLogits(model, x);
        string dir = TestFiles.TempDir();
        AdapterFiles.Save(peft, dir);
        using (var file = SafeTensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFile)))
        {
            Assert.DoesNotContain(file.Tensors, t => t.Name.EndsWith(".weight") && !t.Name.StartsWith("head.") && !t.Name.Contains("structured"));
            foreach (var t in file.Tensors.Where(t => t.Name.EndsWith("spt_weight.delta")))
                Assert.Equal(file.Info(t.Name.Replace(".delta", ".index")).Shape, t.Shape);
        }

        // Merged: the weights change only at selected entries and structured sections; the outputs stay.
        var selected = peft.SelectionState().ToDictionary(s => s.Name, s => s.Tensor.clone());
        peft.Merge();
        foreach (var (layer, flags) in selected.Where(s => s.Key.EndsWith(".spt_structured")).Select(s => (s.Key[..^".spt_structured".Length], s.Value)))
        {
            var merged = ((nn.Module)ModuleSurgery.Find(model, layer)!) is SptLinear l ? l.InnermostLinear.weight! : throw new InvalidOperationException(layer);
            var was = original[$"{layer}.weight"];
            var allowed = zeros(merged.numel(), dtype: @bool);
            allowed.index_fill_(0, selected[$"{layer}.spt_weight.index"], true);
            var rows = allowed.view(merged.shape);
            long sectionRows = merged.shape[0] / flags.shape[0];
            for (int s = 0; s < flags.shape[0]; s++)
                if (flags[s].item<long>() == 1) rows.narrow(0, s * sectionRows, sectionRows).fill_(true);
            Assert.False(merged.ne(was).logical_and(rows.logical_not()).any().item<bool>(), $"{layer}: an unselected entry moved");
        }
        TensorAssert.Close(before, TunerTestKit.EvalLogits(model, x), atol: 1e-5, rtol: 1e-5, what: "merged");
        peft.Unmerge();

        using var fresh = PrePassKit.Backbone();
        var loaded = AdapterFiles.Load(fresh, dir);
        Assert.False(loaded.NeedsPrePass);
        Assert.Equal(peft.CountTrainable(), loaded.CountTrainable());
        TensorAssert.Identical(before, TunerTestKit.EvalLogits(fresh, x), "spt reloaded");
    }

    [Fact]
    public void A_resumed_run_takes_the_selection_and_its_shapes_from_the_epoch_checkpoint()
    {
        using var train = PrePassKit.Loader();
        var checkpoint = new TrainCheckpoint(TestFiles.TempDir());
        string[] sets = { "budget=6000", "batches=2" };
        using var first = PrePassKit.Backbone();
        var peft = PeftModel.Create(first, "spt-lora", TunerRegistry.ParseSettings(sets));
        var one = new Trainer(peft, PrePassKit.Options(epochs: 1), CPU).Fit(train, checkpoint: checkpoint);
        var chosen = peft.SelectionState().ToDictionary(s => s.Name, s => s.Tensor.clone());

        using var second = PrePassKit.Backbone();
        var resumed = PeftModel.Create(second, "spt-lora", TunerRegistry.ParseSettings(sets));
        var two = new Trainer(resumed, PrePassKit.Options(epochs: 2), CPU).Fit(train, checkpoint: checkpoint);
        Assert.Equal(one.PrePassSeconds, two.PrePassSeconds);
        foreach (var (name, t) in resumed.SelectionState()) TensorAssert.Identical(chosen[name], t, name);
        Assert.Equal(2, two.EpochLosses.Count);
    }

    [Fact]
    public void Spt_adapter_refuses_to_merge_and_a_budget_under_one_module_is_one_line()
    {
        using var model = TunerTestKit.Backbone();
        var peft = PeftModel.Create(model, "spt-adapter", TunerRegistry.ParseSettings(new[] { "budget=5000" }));
        var e = Assert.Throws<PeftSharpException>(() => peft.Merge());
        Assert.Contains("spt-adapter", e.Message);
        // The cheapest LoRA module on the 64-wide backbone: 8 · (64 + 64) = 1024 parameters.
        var bad = NewMethodKit.BadSetting("spt-lora", "budget=1000");
        Assert.Contains("'budget' = 1000 is smaller than one structured module (1024 parameters at rank 8", bad.Message);
        Assert.DoesNotContain("\n", bad.Message);
        Assert.Contains("'alpha' must be >=", NewMethodKit.BadSetting("spt-lora", "alpha=0").Message);
    }
}
