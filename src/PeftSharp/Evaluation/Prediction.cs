namespace PeftSharp.Evaluation;

/// <summary>The model's output on one evaluation example (its index in the evaluation split's file list).</summary>
public sealed record Prediction(int Index, int Label, int Predicted, float[] Logits)
{
    public bool Correct => Label == Predicted;
}
