// TorchSharp's random generator is process-wide: tests that seed it and expect exact sequences (determinism,
// resume, init checks) must not share it with tests running beside them. Torch ops use both cores anyway.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
