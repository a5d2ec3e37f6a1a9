using TorchSharp;
using static TorchSharp.torch;
using DataLoader = PeftSharp.Data.DataLoader;

namespace PeftSharp.Tuners;

/// <summary>What a method's pre-pass may read: the run's training split (and nothing else), the device, the run's seed
/// (for any random views the pass draws).</summary>
public sealed record PrePassData(DataLoader Train, Device Device, int Seed);

/// <summary>
/// An applied method that chooses part of itself from the training data before training: SCT's channel saliency,
/// GPS's gradient-based selection (issue 28's pre-passes). The trainer calls <see cref="RunPrePass"/> once, before the
/// first epoch, when <see cref="Selected"/> is false; the time it takes counts as training time and is reported apart.
/// <para>The selection lives in buffers of the method's modules (<see cref="SelectionTensors"/>): adapter files and
/// epoch checkpoints save them beside the trained tensors, and loading them marks the method selected, so a resumed
/// run or a reloaded adapter never redoes the pass. Until selected, a method works with a fixed default selection (so
/// a model built without data still runs), but a trainer never trains on it.</para>
/// </summary>
public interface IPrePass
{
    /// <summary>What the pass does, for logs ("SCT channel saliency").</summary>
    string PrePassName { get; }

    /// <summary>True once the selection was made by the pass or loaded from files.</summary>
    bool Selected { get; }

    /// <summary>Runs the pass over <see cref="PrePassData.Train"/> and stores the selection; leaves every parameter's
    /// trainability and value as it found them.</summary>
    void RunPrePass(PrePassData data);

    /// <summary>The selection buffers were loaded (adapter files, an epoch checkpoint).</summary>
    void MarkSelected();

    /// <summary>The buffers holding the selection (registered in the method's modules, so they have state-dict names).</summary>
    IEnumerable<Tensor> SelectionTensors();
}
