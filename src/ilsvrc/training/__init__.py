"""Training and evaluation, the fourth layer: data sets and the papers' augmentations (`data`,
`transforms`, `images`, `cache`), recipes and schedules (`recipes`), the loop (`loop`), crash-safe
checkpoints (`checkpoint`), torchrun/DDP (`distributed`), signals (`stopping`), metrics files
(`metrics`, read without torch), test protocols (`evaluate`), `eval`/`predict` on a run
(`inference`) and `ilsvrc export` to ONNX or TorchScript (`export`).

Importing this package imports nothing heavy: each module brings torch in only where it needs it, so
the pictures can read a run's metrics without torch.
"""
