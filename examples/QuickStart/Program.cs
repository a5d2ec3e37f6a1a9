using PeftSharp.Data; using PeftSharp.Inference; using PeftSharp.Training; using PeftSharp.Tuners;
var task = ImageTask.Open("my-photos");                       // one sub-folder of images per class, split 70/10/20
using var tuned = FineTuning.Run(task, new LoraConfig { Rank = 8 }, new TrainOptions { Epochs = 10, WarmupEpochs = 1, Normalization = "inception" });
Console.WriteLine($"test top-1 {tuned.Evaluation.Metrics.Top1:F2} % ({tuned.Peft.Summary()})");
tuned.SaveAdapter("my-adapter");                              // records the base, preprocessing and class names
using var model = Classifier.Load(new ClassifierSource { Adapter = "my-adapter" });
model.MergeAndUnload();                                       // plain timm weights, no adapter left at inference
var top = Predictor.Predict(model, ImageFiles.Collect(["photo.png"]))[0].Top[0];
Console.WriteLine($"photo.png: {top.Name} ({top.Probability:P1})");
