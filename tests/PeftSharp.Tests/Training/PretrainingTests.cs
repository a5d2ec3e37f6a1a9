using PeftSharp.Checkpoints;
using PeftSharp.Data;
using PeftSharp.Models;
using PeftSharp.Suite;
using PeftSharp.Training;
using static TorchSharp.torch;

namespace PeftSharp.Tests.Training;

public class PretrainingTests
{
    [Fact]
    public void The_curriculum_grows_classes_and_augmentation_from_the_start_values_to_the_full_task()
    {
        var o = new PretrainOptions { Steps = 1000, CurriculumFraction = 0.5, StartClasses = 32 };

        Assert.Equal((32, 0.0), o.Curriculum(0, 636));
        Assert.Equal((636, 1.0), o.Curriculum(500, 636));
        Assert.Equal((636, 1.0), o.Curriculum(999, 636));
        var steps = Enumerable.Range(0, 1000).Select(s => o.Curriculum(s, 636)).ToList();
        for (int i = 1; i < steps.Count; i++)
        {
            Assert.True(steps[i].Classes >= steps[i - 1].Classes, $"classes shrink at step {i}");
            Assert.True(steps[i].Difficulty >= steps[i - 1].Difficulty, $"difficulty falls at step {i}");
        }
        // Geometric growth: half-way through the ramp, sqrt(32 * 636) classes.
        Assert.InRange(o.Curriculum(250, 636).Classes, 140, 145);
        // No curriculum: the full task from the first step; a start above the class count is clamped.
        Assert.Equal((636, 1.0), (o with { CurriculumFraction = 0 }).Curriculum(0, 636));
        Assert.Equal((10, 0.0), o.Curriculum(0, 10));
    }

    [Fact]
    public void A_short_run_trains_saves_timm_keys_and_records_its_normalization()
    {
        string dir = TestFiles.TempDir("peftsharp-pretrain");
        string pictures = Path.Combine(dir, "pictures");
        Data.TestImages.WriteSolidPng(Path.Combine(pictures, "red.png"), 64, 48, 230, 10, 10);
        Data.TestImages.WritePng(Path.Combine(pictures, "ramp.png"), 64, 48, (x, y) => ((byte)(4 * x), (byte)(5 * y), 90));
        var options = new PretrainOptions
        {
            Model = new VitConfig { ImgSize = 16, PatchSize = 8, EmbedDim = 24, Depth = 1, NumHeads = 2, NumClasses = 0 },
            Steps = 12, BatchSize = 16, HeldOut = 32, StartClasses = 4, Seed = 3, PhotoDirs = [pictures],
        };
        var initial = new VisionTransformer(options.Model);
        var result = Pretraining.Run(options);
        try
        {
            // 4 of every 16 samples are crops of the two pictures, whose classes follow the glyphs'.
            Assert.Equal(4, options.PhotosPerBatch(options.BatchSize));
            Assert.Equal(["ramp", "red"], result.Photos);
            Assert.Equal(result.GlyphClasses + 2, result.Classes);
            // The held-out top-1s are the trained model's accuracy, recomputed here from its predictions: on 32 glyphs
            // drawn with seed + 1 (a stream training never draws from) and on 32 photo crops from their own stream
            // ("PHOT" = 0x50484F54), labelled after the glyph classes; inception normalization, argmax against the label.
            var glyphs = GlyphSource.Open(options.Model.ImgSize, options.Seed, options.FontDir);
            result.Model.eval();
            double Top1((byte[] Pixels, long[] Labels) set)
            {
                using var _ = no_grad();
                var x = (glyphs.ToTensor(set.Pixels).to(float32) / 255f - 0.5f) / 0.5f;
                var predicted = result.Model.forward(x).argmax(1).data<long>().ToArray();
                return 100.0 * predicted.Zip(set.Labels).Count(p => p.First == p.Second) / set.Labels.Length;
            }
            var mix = typeof(PeftSharp.Data.ImageTask).Assembly.GetType("PeftSharp.Data.SuiteRng")!.GetMethod("Mix")!;   // internal: the suite's seed hash
            var photoSeeds = Enumerable.Range(0, 32).Select(i => (ulong)mix.Invoke(null, [new ulong[] { 0x50484F54, (ulong)(uint)options.Seed, (ulong)i }])!).ToArray();
            var photoSet = PhotoSource.Open(options.Model.ImgSize, [pictures]).Render(photoSeeds, firstLabel: result.GlyphClasses);
            Assert.Equal(32, photoSet.Labels.Length);
            Assert.Equal(Top1(glyphs.HeldOut(32, options.Seed + 1)), result.HeldOutTop1, 10);
            Assert.Equal(Top1(photoSet), result.PhotoHeldOutTop1, 10);

            string path = Path.Combine(dir, "tiny.safetensors");
            Pretraining.Save(result, options, path);

            Assert.True(double.IsFinite(result.FinalLoss));
            Assert.Equal("inception", ModelCheckpoints.ReadNormalization(path));
            var card = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tiny.card.json")))!;
            // The card states the same numbers.
            Assert.Equal(Math.Round(result.HeldOutTop1, 2), card["held_out_top1_percent"]!.GetValue<double>());
            Assert.Equal(Math.Round(result.PhotoHeldOutTop1, 2), card["held_out_photo_top1_percent"]!.GetValue<double>());
            Assert.Equal(2, card["photos"]!.AsArray().Count);
            Assert.Contains("PhotoSource: 2 wallpaper pictures", (string)card["data"]!);
            var loaded = ModelCheckpoints.LoadVit(path).Model;
            Assert.Equal(result.Classes, loaded.Config.NumClasses);
            Assert.Contains("blocks.0.attn.qkv.weight", loaded.state_dict().Keys);
            Assert.Contains("patch_embed.proj.weight", loaded.state_dict().Keys);
            using var x = rand(2, 3, 16, 16);
            result.Model.eval();
            loaded.eval();
            TensorAssert.Close(result.Model.forward(x), loaded.forward(x), 1e-6);
            Assert.False(initial.blocks[0].attn.qkv.state_dict()["weight"].allclose(loaded.blocks[0].attn.qkv.state_dict()["weight"]),
                         "the weights did not move");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
