using TorchSharp;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Tuners;

/// <summary>What a method's pre-pass may read: the run's training split (and nothing else), the device, the run's seed
/// (for any random views the pass draws).</summary>
public sealed record PrePassData(DataLoader Train, Device Device, int Seed);

/// <summary>
/// An applied method that chooses part of itself from the training data before training: SCT's channel saliency,
/// GPS's gradient-based selection, SPT's sensitivity and budget allocation, NOAH's supernet search (issue 28's
/// pre-passes). The trainer calls <see cref="RunPrePass"/> once, before the first epoch, when <see cref="Selected"/>
/// is false; the time it takes counts as training time and is reported apart.
/// <para>The selection lives in buffers of the method's modules (<see cref="SelectionTensors"/>): adapter files, epoch
/// checkpoints and stored pre-passes save them beside (or instead of) the trained tensors, and loading them
/// (<see cref="LoadSelection"/>) marks the method selected, so a resumed run, a reloaded adapter or another learning
/// rate of the same grid never redoes the pass. Until selected, a method works with a fixed default selection (so a
/// model built without data still runs and counts its parameters), but a trainer never trains on it.</para>
/// <para>The names of the selection buffers are fixed by the method's hyperparameters; their shapes may follow the
/// selection (SPT's selected entries, NOAH's chosen widths), and so may the shapes of the trained tensors: such a
/// method rebuilds its trained modules when a selection is made or loaded.</para>
/// </summary>
public interface IPrePass
{
    /// <summary>What the pass does, for logs ("SCT channel saliency").</summary>
    string PrePassName { get; }

    /// <summary>True once the selection was made by the pass or loaded from files.</summary>
    bool Selected { get; }

    /// <summary>Runs the pass over <see cref="PrePassData.Train"/> and stores the selection; leaves every base
    /// parameter's trainability and value as it found them.</summary>
    void RunPrePass(PrePassData data);

    /// <summary>The selection buffers were loaded (adapter files, an epoch checkpoint).</summary>
    void MarkSelected();

    /// <summary>The buffers holding the selection (registered in the method's modules, so they have state-dict names).</summary>
    IEnumerable<Tensor> SelectionTensors();

    /// <summary>What the last pass measured about its choice, for the record of a stored pre-pass (NOAH: the chosen
    /// subnet's score on its search split).</summary>
    IReadOnlyDictionary<string, double> PrePassMetrics => new Dictionary<string, double>();

    /// <summary>Takes a saved selection: each of <see cref="SelectionTensors"/> with the tensor saved under its name
    /// (<paramref name="where"/> names the source in errors). The default copies the values, which must have the
    /// buffers' shapes; a method whose structure follows its selection rebuilds itself here.</summary>
    void LoadSelection(IReadOnlyList<(Tensor Buffer, Tensor Saved, string Name)> saved, string where)
    {
        using var _ = no_grad();
        foreach (var (buffer, value, name) in saved)
        {
            if (!value.shape.SequenceEqual(buffer.shape))
                throw new PeftSharpException($"{where}: selection '{name}' has shape [{string.Join(", ", value.shape)}], the model expects [{string.Join(", ", buffer.shape)}]");
            buffer.copy_(value);
        }
    }
}
