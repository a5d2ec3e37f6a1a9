namespace PeftSharp.Video;

/// <summary>How frames are chosen from a clip, as VideoMAE does it.</summary>
public enum SamplingMode
{
    /// <summary>Something-Something v2 (VideoMAE's ssv2.py, TSN-style): the clip split into T equal segments, one frame
    /// from each — a random one in training, the middle one at test time; the whole clip is always covered.</summary>
    Segment,
    /// <summary>Kinetics (VideoMAE's kinetics.py): T frames every <c>interval</c> frames from a start — random in
    /// training, evenly spaced starts for the test views.</summary>
    Dense,
}

/// <summary>Frame indices for one clip. A clip shorter than the sampler needs is an error naming it (VideoMAE pads by
/// repeating frames; here a short clip is more often a broken one).</summary>
public sealed record ClipSampler(SamplingMode Mode, int Frames, int Interval = 1)
{
    /// <summary>Frames a clip must have: T for segments (one distinct frame per segment), (T − 1)·interval + 1 for dense.</summary>
    public int FramesNeeded => Mode == SamplingMode.Segment ? Frames : (Frames - 1) * Interval + 1;

    public void Check(int available, string clip)
    {
        if (available < FramesNeeded)
            throw new PeftSharpException($"{clip}: has {available} frame{(available == 1 ? "" : "s")}; the {Mode.ToString().ToLowerInvariant()} sampler needs at least {FramesNeeded} ({Frames} frames{(Mode == SamplingMode.Dense ? $" every {Interval}" : "")})");
    }

    /// <summary>Training indices: a random frame per segment, or a random dense window.</summary>
    public int[] Train(int available, Random rng)
    {
        if (Mode == SamplingMode.Segment)
            return Enumerable.Range(0, Frames).Select(i =>
            {
                var (start, end) = Segment(available, i);
                return start + rng.Next(end - start);
            }).ToArray();
        int span = FramesNeeded;
        int first = rng.Next(available - span + 1);
        return Enumerable.Range(0, Frames).Select(i => first + i * Interval).ToArray();
    }

    /// <summary>Test indices of temporal view <paramref name="view"/> of <paramref name="views"/>: segment middles
    /// (each view shifts them evenly inside the segment), or dense windows with evenly spaced starts.</summary>
    public int[] Test(int available, int view = 0, int views = 1)
    {
        if (Mode == SamplingMode.Segment)
            return Enumerable.Range(0, Frames).Select(i =>
            {
                var (start, end) = Segment(available, i);
                return start + (int)((end - start) * (view + 0.5) / views);
            }).ToArray();
        int room = available - FramesNeeded;
        int first = views == 1 ? room / 2 : (int)Math.Round((double)room * view / (views - 1));
        return Enumerable.Range(0, Frames).Select(i => first + i * Interval).ToArray();
    }

    /// <summary>Segment i of T over n frames: [⌊n·i/T⌋, ⌊n·(i+1)/T⌋), never empty when n ≥ T.</summary>
    (int Start, int End) Segment(int available, int i) =>
        ((int)((long)available * i / Frames), (int)((long)available * (i + 1) / Frames));

    public static SamplingMode ParseMode(string text) => text.Trim().ToLowerInvariant() switch
    {
        "segment" or "ssv2" => SamplingMode.Segment,
        "dense" or "kinetics" => SamplingMode.Dense,
        _ => throw new PeftSharpException("sampling", $"'{text}': expected segment (Something-Something-like) or dense (Kinetics-like)"),
    };
}
