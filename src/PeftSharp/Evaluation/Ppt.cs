namespace PeftSharp.Evaluation;

/// <summary>
/// V-PEFT Bench's performance–parameter trade-off: PPT = M · exp(−log10(P / C + 1)), C = 10⁷, with M the task
/// metric as a fraction and P the trainable parameter count (it reproduces the bench's published PPT values).
/// </summary>
public static class Ppt
{
    public const double C = 1e7;

    public static double Compute(double metricFraction, long trainableParams) =>
        metricFraction * Math.Exp(-Math.Log10(trainableParams / C + 1));
}
