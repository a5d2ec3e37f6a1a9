using PeftSharp.Studies;
using PeftSharp.Suite;
using PeftSharp.Tests.Cli;
using PeftSharp.VisionLanguage;

namespace PeftSharp.Tests.VisionLanguage;

public class CaptionDataTests
{
    [Fact]
    public void Scenes_depend_only_on_their_seed_and_captions_follow_the_grammar()
    {
        var a = CaptionScenes.Render(123);
        var b = CaptionScenes.Render(new ulong[] { 5, 123 })[1];
        Assert.Equal(a.Pixels, b.Pixels);
        Assert.Equal(a.Caption, b.Caption);
        var words = CaptionScenes.Colours.Concat(CaptionScenes.Shapes).Concat(CaptionScenes.Shapes.Select(s => s + "s"))
            .Concat(CaptionScenes.SizeWords).Concat(["a", "two", "left", "right", "of", "above", "below"]).ToHashSet();
        foreach (var scene in CaptionScenes.Render(Enumerable.Range(0, 200).Select(i => (ulong)i).ToArray()))
            Assert.All(scene.Caption.Split(' '), w => Assert.Contains(w, words));
    }

    [Fact]
    public void A_relation_and_its_converse_describe_one_scene()
    {
        // Both wordings occur, and each maps to the canonical "left of" / "above" key.
        var scenes = CaptionScenes.Render(Enumerable.Range(0, 400).Select(i => (ulong)i).ToArray());
        Assert.Contains(scenes, s => s.Caption.Contains("right of"));
        Assert.All(scenes.Where(s => s.Caption.Contains(" of ") || s.Caption.Contains("above") || s.Caption.Contains("below")),
                   s => Assert.True(s.SceneKey.Contains("left of") || s.SceneKey.Contains("above"), s.SceneKey));
    }

    [Fact]
    public void A_caption_folder_round_trips_and_bad_files_name_the_line()
    {
        string dir = TestFiles.TempDir();
        var set = VlTasks.Scenes("pairs", 5, 7, unique: true);
        set.Save(dir);
        var back = CaptionSet.Load(dir, 32);
        Assert.Equal(set.Captions, back.Captions);
        Assert.Equal(set.Pixels, back.Pixels);

        File.WriteAllText(Path.Combine(dir, CaptionSet.CaptionsFile), "image\ttext\n00000.png\tx\n");
        Assert.Contains("line 1: no 'caption' column", Assert.Throws<PeftSharpException>(() => CaptionSet.Load(dir, 32)).Message);
        File.WriteAllText(Path.Combine(dir, CaptionSet.CaptionsFile), "image\tcaption\n00000.png\ta red circle\n00001.png\t  \n");
        Assert.Contains("line 3: empty caption", Assert.Throws<PeftSharpException>(() => CaptionSet.Load(dir, 32)).Message);
        File.WriteAllText(Path.Combine(dir, CaptionSet.CaptionsFile), "image\tcaption\n00000.png\n");
        Assert.Contains("line 2: 1 column, expected 2", Assert.Throws<PeftSharpException>(() => CaptionSet.Load(dir, 32)).Message);
    }

    [Fact]
    public void Long_text_is_cut_where_open_clip_cuts_it_and_counted()
    {
        var texts = new[] { "a red circle", string.Join(" ", Enumerable.Repeat("circle", 40)) };
        using var tokens = CaptionSet.Tokenize(texts, 16, out int truncated);
        Assert.Equal(1, truncated);
        Assert.Equal(PeftSharp.Text.ClipTokenizer.EndOfText, tokens[1, 15].item<long>());
    }

    [Fact]
    public void A_data_fraction_is_a_prefix_of_every_larger_fraction()
    {
        var task = new VlTask("t", "", true, ClipObjective.Contrastive, VlTasks.Scenes("train", 100, 3, unique: false), VlTasks.Scenes("test", 10, 4, unique: true));
        var small = task.TrainFraction(0.05);
        var large = task.TrainFraction(0.25);
        Assert.Equal(5, small.Count);
        Assert.Equal(25, large.Count);
        Assert.Equal(small.Captions, large.Captions.Take(5));
        Assert.Equal(2, task.TrainFraction(0.001).Count);
    }

    [Fact]
    public void The_study_findings_follow_from_the_cells()
    {
        var consistent = new VlTask("c", "", true, ClipObjective.Contrastive, VlTasks.Scenes("a", 4, 1, false), VlTasks.Scenes("b", 4, 2, true));
        var inconsistent = consistent with { Name = "i", ConsistentWithPretraining = false };
        VlCell Cell(string task, string method, string capacity, double fraction, long p, double score) => new(task, method, capacity, fraction, (int)(fraction * 100), p, score);
        var cells = new List<VlCell>
        {
            // Consistent: flat in data, capacity up then down (drop 5 > 2).
            Cell("c", "lora", "rank=1", 0.1, 10, 80), Cell("c", "lora", "rank=1", 1, 10, 80.5),
            Cell("c", "lora", "rank=8", 0.1, 80, 84), Cell("c", "lora", "rank=8", 1, 80, 84),
            Cell("c", "lora", "rank=64", 0.1, 640, 79), Cell("c", "lora", "rank=64", 1, 640, 79),
            // Inconsistent: +20 with data, rising with capacity.
            Cell("i", "lora", "rank=1", 0.1, 10, 30), Cell("i", "lora", "rank=1", 1, 10, 50),
            Cell("i", "lora", "rank=8", 0.1, 80, 35), Cell("i", "lora", "rank=8", 1, 80, 55),
            Cell("i", "lora", "rank=64", 0.1, 640, 40), Cell("i", "lora", "rank=64", 1, 640, 60),
        };
        var f = VlScalingStudy.Findings(cells, [consistent, inconsistent]);
        Assert.Equal(20, f.DataGain["i"], 6);
        Assert.Equal(1.0 / 6, f.DataGain["c"], 6);
        Assert.True(f.BothHold, string.Join(" ", f.Statements));
        Assert.Equal(5, f.LargestCapacityDrop["c"], 6);

        // Make the consistent task gain from data as well: finding 1 no longer holds.
        cells[1] = cells[1] with { Score = 95 };
        var g = VlScalingStudy.Findings(cells, [consistent, inconsistent]);
        Assert.False(g.DataIrrelevantConsistent);
        Assert.Contains("does not hold", g.Statements[0]);
        Assert.False(g.UpperHolds); // with two fractions the last step is the whole range

        // Three fractions: the consistent task loses 20 points on 10 pairs and is flat from 50 on, the inconsistent
        // one keeps rising: the finding fails from the smallest fraction but holds over the last step.
        var three = new List<VlCell>
        {
            Cell("c", "lora", "rank=8", 0.1, 80, 60), Cell("c", "lora", "rank=8", 0.5, 80, 84), Cell("c", "lora", "rank=8", 1, 80, 84.5),
            Cell("i", "lora", "rank=8", 0.1, 80, 30), Cell("i", "lora", "rank=8", 0.5, 80, 45), Cell("i", "lora", "rank=8", 1, 80, 55),
        };
        var h = VlScalingStudy.Findings(three, [consistent, inconsistent]);
        Assert.False(h.DataIrrelevantConsistent);
        Assert.True(h.UpperHolds);
        Assert.Equal(0.5, h.UpperDataGain["c"], 6);
        Assert.Equal("holds from 50 training pairs on, not from the smallest fraction", h.ToJson()["finding_1_data_size"]!.GetValue<string>());
    }

    [Fact]
    public void Bad_clip_input_gets_one_line_and_exit_code_2()
    {
        var unknownTower = CliRunner.Run("clip", "train", "--task", "scene-retrieval", "--method", "lora", "--towers", "audio", "--checkpoint", TestFiles.ClipCheckpoint);
        Assert.Equal(2, unknownTower.ExitCode);
        CliRunner.AssertOneLineError(unknownTower, "unknown CLIP tower 'audio'");
        string dir = TestFiles.TempDir();
        File.WriteAllText(Path.Combine(dir, CaptionSet.CaptionsFile), "file\tcaption\n");
        var noColumn = CliRunner.Run("clip", "eval", "--test", dir, "--checkpoint", TestFiles.ClipCheckpoint);
        Assert.Equal(2, noColumn.ExitCode);
        CliRunner.AssertOneLineError(noColumn, "no 'image' column");
        var unknownTask = CliRunner.Run("clip", "eval", "--task", "vqa", "--checkpoint", TestFiles.ClipCheckpoint);
        CliRunner.AssertOneLineError(unknownTask, "unknown vision-language task 'vqa'");
    }
}
