using PeftSharp.Evaluation;
using Microsoft.Data.Sqlite;
using PeftSharp.Results;

namespace PeftSharp.Tests.Results;

/// <summary>Specs, outcomes and deterministic predictions shared by the results tests and the writer child process.</summary>
internal static class ResultsTestData
{
    public static RunSpec Spec(int i = 0, string dataset = "dtd", string method = "lora", string? sweep = "sweep-1") => new()
    {
        Stage = RunStage.Search,
        Dataset = dataset,
        TrainSplit = "train800",
        EvalSplit = "val200",
        Method = method,
        HyperJson = $$"""{"rank": 8, "alpha": 16, "targets": "qkv", "run": {{i}}}""",
        Lr = 1e-3,
        WeightDecay = 1e-4,
        Seed = 42,
        Epochs = 100,
        BatchSize = 64,
        TrainingJson = """{"label_smoothing": 0, "drop_path": 0.1, "warmup_epochs": 10}""",
        ModelJson = """{"preset": "vit-b16-in21k"}""",
        Checkpoint = "vit_b16.safetensors sha256:00ff",
        SweepId = sweep,
    };

    public static readonly RunContext Context = new() { DatasetPath = "/data/vtab-1k/dtd", CodeVersion = "test 1.0", Host = "test-host" };

    public static RunOutcome Outcome(double top1 = 0.5, long trainable = 1234) => new()
    {
        Top1 = top1,
        TrainableParams = trainable,
        MetricsJson = """{"ece": 0.05, "per_class": [0.5, 0.25]}""",
        TrainSeconds = 12.5,
        EvalSeconds = 1.25,
        ImagesPerSecond = 64,
    };

    /// <summary>Deterministic predictions of run <paramref name="run"/>, so any process can check them bit for bit.</summary>
    public static List<Prediction> Predictions(int run, int count, int classes)
    {
        var random = new Random(run * 7919 + 1);
        var list = new List<Prediction>(count);
        for (int e = 0; e < count; e++)
        {
            var logits = new float[classes];
            for (int c = 0; c < classes; c++) logits[c] = (float)(random.NextDouble() * 20 - 10);
            list.Add(new Prediction(e, e % classes, random.Next(classes), logits));
        }
        return list;
    }

    /// <summary>Predictions whose first logits are values a lossy encoding would change: NaN with a payload, -0,
    /// a subnormal, infinities, extremes.</summary>
    public static List<Prediction> PredictionsWithOddLogits()
    {
        var predictions = Predictions(1, 30, 7);
        predictions[0].Logits[0] = BitConverter.Int32BitsToSingle(0x7FC0_1234);
        predictions[0].Logits[1] = -0f;
        predictions[0].Logits[2] = float.Epsilon;
        predictions[0].Logits[3] = float.NegativeInfinity;
        predictions[0].Logits[4] = float.MaxValue;
        return predictions;
    }

    /// <summary>A raw connection that really closes (no pool), for poking at the file behind ResultsDb's back.</summary>
    public static SqliteConnection Raw(string path)
    {
        var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        c.Open();
        return c;
    }

    public static object? RawScalar(string path, string sql)
    {
        using var c = Raw(path);
        using var command = c.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    public static void AssertSamePredictions(IReadOnlyList<Prediction> expected, IReadOnlyList<Prediction> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Index, actual[i].Index);
            Assert.Equal(expected[i].Label, actual[i].Label);
            Assert.Equal(expected[i].Predicted, actual[i].Predicted);
            Assert.Equal(expected[i].Logits.Select(BitConverter.SingleToInt32Bits), actual[i].Logits.Select(BitConverter.SingleToInt32Bits));
        }
    }
}
