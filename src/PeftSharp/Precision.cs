namespace PeftSharp;

/// <summary>Numeric precision of the matrix products in training and inference.</summary>
public enum Precision
{
    /// <summary>Everything in float32.</summary>
    Float32,
    /// <summary>libtorch's autocast to bfloat16: matrix products, convolutions and attention run in bfloat16, the
    /// parameters, their gradients, the optimizer state, normalisation and the loss stay float32.</summary>
    BFloat16,
}
