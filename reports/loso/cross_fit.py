"""Experiment (issue 19) behind the first cross-fit figures in reports/loso/runs.md: model_training.cross_fit
with FitConfig's own defaults (8 epochs, not `make train`'s 15), on the shared sites' training split.

    .venv/bin/python reports/loso/cross_fit.py K OUT.npz [EPOCHS]

`python -m model_training cross-fit` does the same with a trained model's own recipe and split."""
import sys
from pathlib import Path

sys.path.insert(0, "lambda_src")

from model_training.cross_fit import cross_fit
from model_training.lesion_fit import FitConfig
from model_training.loso import split_site
from model_training.sites import load_sites

k, out = int(sys.argv[1]), Path(sys.argv[2])
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else FitConfig().epochs
sites = load_sites(["../shared/data/busi", "../shared/data/busbra"], side=224, cache_dir="runs/cache")
splits = [split_site(s, test_fraction=0.2, seed=42) for s in sites]
W = "../shared/weights/mobilenet_v2_1.0_224_imagenet_notop_from_coral_ptq.weights.h5"
result = cross_fit(splits, FitConfig(weights=W, epochs=epochs), k=k)
result.save(out)
print(f"written {out} ({result.seconds:.0f} s)")
