using PeftSharp.Data;

namespace PeftSharp.Suite;

/// <summary>
/// The natural and specialized tasks, cut from real images shipped in data/suite (see data/suite/README.md): two as
/// they are (Fashion-MNIST, OpenCV's handwritten digits), one as crops of photographs, and two "specialized" tasks
/// that pass other, disjoint images of the same sources through a fixed simulated imaging device. The specialized
/// ones are derived because no medical or remote-sensing image set is available as a Debian package here.
/// </summary>
internal static class ShippedTasks
{
    public const string FashionVersion = "dataset-fashion-mnist 0.0~git20200523.55506a9-1";
    public const string OpenCvVersion = "opencv-doc 4.6.0+dfsg-12";
    const string FashionLicence = "MIT (Expat), © 2017 Zalando SE";
    const string OpenCvLicence = "Apache-2.0 AND BSD-3-Clause (OpenCV, per the Debian copyright file of opencv-doc)";

    public static readonly string[] FashionClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
    public static readonly string[] DigitClasses = Enumerable.Range(0, 10).Select(d => d.ToString()).ToArray();

    /// <summary>The photographs of photo-patches: class name and file under opencv-doc's examples folder.</summary>
    public static readonly (string Name, string File)[] Photos =
    [
        ("baboon", "data/baboon.jpg"),
        ("fruits", "data/fruits.jpg"),
        ("starry-night", "data/starry_night.jpg"),
        ("office-building", "data/building.jpg"),
        ("butterfly", "data/butterfly.jpg"),
        ("domed-building", "data/home.jpg"),
        ("sweets", "data/smarties.png"),
        ("graffiti", "data/graf1.png"),
        ("leuven-street", "data/leuvenA.jpg"),
        ("aerial", "data/aero1.jpg"),
        ("squirrel", "data/squirrel_cls.jpg"),
        ("desk-stuff", "data/stuff.jpg"),
    ];

    public static readonly SubsetLayout FashionLayout = new("fashion-mnist", 28, 28, true, 50);
    public static readonly SubsetLayout FashionXrayLayout = new("fashion-xray", 28, 28, true, 50);
    public static readonly SubsetLayout DigitsLayout = new("digits", 20, 20, true, 50);
    public static readonly SubsetLayout DigitsMicroscopyLayout = new("digits-microscopy", 20, 20, true, 50);
    public const int PhotoSide = 160;
    public static readonly SubsetLayout PhotosLayout = new("photos", PhotoSide, PhotoSide, false, 4);

    public static readonly IReadOnlyList<SubsetLayout> Layouts =
        [FashionLayout, FashionXrayLayout, DigitsLayout, DigitsMicroscopyLayout, PhotosLayout];

    const string FashionFiles = "/usr/share/datasets/fashion-mnist/{train,t10k}-images-idx3-ubyte.gz";
    const string DigitsFile = "/usr/share/doc/opencv-doc/examples/data/digits.png";

    public static SuiteTaskInfo FashionInfo => new("fashion-mnist", TaskGroup.Natural, FashionClasses, 28, 28, true, 1000,
        $"Fashion-MNIST from the Debian package {FashionVersion} ({FashionFiles}): 100 images per class from the " +
        "training file (train + val) and 100 per class from the t10k file (test), stored as they are.", FashionLicence);

    public static SuiteTaskInfo DigitsInfo => new("digits", TaskGroup.Natural, DigitClasses, 20, 20, true, 1000,
        $"OpenCV's handwritten digits from the Debian package {OpenCvVersion} ({DigitsFile}, 500 20×20 digits per class): " +
        "100 per class for train + val and another 100 for test, stored as they are.", OpenCvLicence);

    public static SuiteTaskInfo PhotoPatchesInfo => new("photo-patches", TaskGroup.Natural, Photos.Select(p => p.Name).ToArray(),
        32, 32, false, 1000,
        $"32×32 crops of {Photos.Length} sample photographs from the Debian package {OpenCvVersion} " +
        "(/usr/share/doc/opencv-doc/examples/data/, shipped as 160×160 centre crops); label = source photograph. " +
        "Crops have a random side of 28–72 pixels and a random horizontal flip; train and val crops come from the " +
        "top-left and bottom-right quadrants, test crops from the other two, so test regions are never seen in training.",
        OpenCvLicence);

    public static SuiteTaskInfo FashionXrayInfo => new("fashion-xray", TaskGroup.Specialized, FashionClasses, 32, 32, false, 1000,
        $"Derived: Fashion-MNIST images disjoint from the fashion-mnist task's ({FashionVersion}) imaged by a fixed " +
        "simulated X-ray device: attenuation exp(−μ·(thickness + tray)), detector blur, quantum noise, vignetting, " +
        "inverted display with a cool tint; μ, position and noise drawn per image. A stand-in for VTAB's specialized " +
        "(medical) group: no medical image set is available as a Debian package here.", FashionLicence);

    public static SuiteTaskInfo DigitsMicroscopyInfo => new("digits-microscopy", TaskGroup.Specialized, DigitClasses, 32, 32, false, 1000,
        $"Derived: OpenCV digits disjoint from the digits task's ({OpenCvVersion}, {DigitsFile}) imaged by a fixed " +
        "simulated fluorescence microscope: ink as fluorophore density, Gaussian point-spread blur, autofluorescent " +
        "background cells, shot and read noise, green emission; position, brightness and noise drawn per image. " +
        "A stand-in for VTAB's specialized (microscopy/medical) group.", OpenCvLicence);

    // ---- Plans

    /// <summary>A task whose images are the shipped cells themselves.</summary>
    public static TaskPlan AsStored(SuiteTaskInfo info, ShippedSubset subset, ulong taskSeed) =>
        FromSubset(info, subset, taskSeed, (_, _, cell) => SuiteImage.GrayImage(subset.CellWidth, subset.CellHeight, cell));

    /// <summary>A task whose images are the shipped cells passed through <paramref name="imaging"/>.</summary>
    public static TaskPlan FromSubset(SuiteTaskInfo info, ShippedSubset subset, ulong taskSeed,
        Func<RenderContext, SuiteRng, byte[], SuiteImage> imaging)
    {
        int[] trainVal = subset.Indices(ShippedSubset.TrainVal), test = subset.Indices(ShippedSubset.Test);
        if (trainVal.Length != Plans.TrainCount + Plans.ValCount || test.Length != info.TestCount)
            throw new PeftSharpException($"shipped subset {subset.Name} has {trainVal.Length} train+val and {test.Length} test images; " +
                $"expected {Plans.TrainCount + Plans.ValCount} and {info.TestCount} (rebuild data/suite with 'peftsharp suite build')");
        return Plans.FromPools(taskSeed, info.NumClasses, trainVal.Select(i => subset.Labels[i]).ToArray(),
            test.Select(i => subset.Labels[i]).ToArray(),
            (context, rng, fromTest, item) => imaging(context, rng, subset.Cells[fromTest ? test[item] : trainVal[item]]));
    }

    public static TaskPlan PhotoPatches(SuiteTaskInfo info, ShippedSubset photos, ulong taskSeed)
    {
        if (photos.Count != Photos.Length)
            throw new PeftSharpException($"shipped subset {photos.Name} has {photos.Count} photographs; expected {Photos.Length}");
        return Plans.Procedural(info, taskSeed, (_, rng, test, label) => PhotoCrop(photos.Cells[label], test, rng));
    }

    /// <summary>A random square crop inside one quadrant: 0 top-left and 3 bottom-right for train/val, 1 and 2 for test.</summary>
    static SuiteImage PhotoCrop(byte[] photo, bool test, SuiteRng rng)
    {
        int quadrant = test ? 1 + rng.Next(2) : 3 * rng.Next(2);
        int half = PhotoSide / 2;
        double side = rng.Range(28, 72);
        double x0 = quadrant % 2 * half + rng.Range(0, half - side), y0 = quadrant / 2 * half + rng.Range(0, half - side);
        return SuiteImage.Rgb(32, 32, PixelOps.CropResize(photo, PhotoSide, PhotoSide, 3, x0, y0, side, 32, flip: rng.Chance(0.5)));
    }

    // ---- Simulated imaging devices for the specialized tasks

    const int Out = 32;

    /// <summary>Places a gray cell (0–255) into a 32×32 plane of values in [0, 1], at a random offset.</summary>
    static float[] Place(byte[] cell, int width, int height, int side, SuiteRng rng)
    {
        byte[] resized = side == width ? cell : PixelOps.CropResize(cell, width, height, 1, 0, 0, width, side);
        var plane = new float[Out * Out];
        int dx = rng.Next(Out - side + 1), dy = rng.Next(Out - side + 1);
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++)
                plane[(y + dy) * Out + x + dx] = resized[y * side + x] / 255f;
        return plane;
    }

    static SuiteImage Tinted(float[] plane, double r, double g, double b)
    {
        var rgb = new byte[Out * Out * 3];
        for (int p = 0; p < plane.Length; p++)
        {
            double v = Math.Clamp(plane[p], 0, 1) * 255;
            rgb[3 * p] = PixelOps.ClampByte(v * r);
            rgb[3 * p + 1] = PixelOps.ClampByte(v * g);
            rgb[3 * p + 2] = PixelOps.ClampByte(v * b);
        }
        return SuiteImage.Rgb(Out, Out, rgb);
    }

    /// <summary>Transmission radiograph of a 28×28 garment: brighter where more material absorbs the beam.</summary>
    public static SuiteImage XRay(RenderContext _, SuiteRng rng, byte[] cell)
    {
        var thickness = PixelOps.Blur(Place(cell, 28, 28, 28, rng), Out, Out, 0.6);
        double mu = rng.Range(1.2, 2.8), tray = rng.Range(0.05, 0.25), vignette = rng.Range(0.1, 0.35);
        double quantum = rng.Range(0.015, 0.05), gamma = rng.Range(0.8, 1.25);
        var transmitted = new float[Out * Out];
        for (int p = 0; p < transmitted.Length; p++)
            transmitted[p] = (float)Math.Exp(-mu * (thickness[p] + tray));
        transmitted = PixelOps.Blur(transmitted, Out, Out, 0.8);
        for (int y = 0; y < Out; y++)
            for (int x = 0; x < Out; x++)
            {
                double r2 = ((x - 15.5) * (x - 15.5) + (y - 15.5) * (y - 15.5)) / (2 * 15.5 * 15.5);
                double intensity = transmitted[y * Out + x] * (1 - vignette * r2);
                intensity += quantum * Math.Sqrt(Math.Max(intensity, 0)) * rng.Gaussian();
                transmitted[y * Out + x] = (float)Math.Pow(Math.Clamp(1 - intensity, 0, 1), gamma);
            }
        return Tinted(transmitted, 0.82, 0.93, 1.0);
    }

    /// <summary>Widefield fluorescence image of a 20×20 digit drawn in fluorophore, among dim autofluorescent cells.</summary>
    public static SuiteImage Microscopy(RenderContext _, SuiteRng rng, byte[] cell)
    {
        int side = 22 + rng.Next(5);
        var density = Place(cell, 20, 20, side, rng);
        double brightness = rng.Range(0.5, 1.0), gamma = rng.Range(0.8, 1.5);
        var emission = new float[Out * Out];
        for (int p = 0; p < emission.Length; p++)
            emission[p] = (float)(brightness * Math.Pow(density[p], gamma));
        int cells = 2 + rng.Next(5);
        for (int c = 0; c < cells; c++)
        {
            double cx = rng.Range(0, Out), cy = rng.Range(0, Out), radius = rng.Range(3, 7), level = rng.Range(0.04, 0.18);
            for (int y = 0; y < Out; y++)
                for (int x = 0; x < Out; x++)
                {
                    double d2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (radius * radius);
                    emission[y * Out + x] += (float)(level * Math.Exp(-d2));
                }
        }
        emission = PixelOps.Blur(emission, Out, Out, rng.Range(0.8, 1.3));
        double photons = rng.Range(30, 120), read = rng.Range(0.005, 0.025), dark = rng.Range(0.01, 0.05);
        for (int p = 0; p < emission.Length; p++)
        {
            double signal = emission[p] + dark;
            emission[p] = (float)(signal + Math.Sqrt(Math.Max(signal, 0) / photons) * rng.Gaussian() + read * rng.Gaussian());
        }
        return Tinted(emission, 0.3, 1.0, 0.4);
    }
}
