"""Experiment (issue 19): the recipe's out-of-fold predictions *within* the training sites, to set the "normal"
threshold of a model trained on every site (leave-one-site-out models have seen one site only, and a BUSI-only
model calls BUS-BRA lesions normal with p ~ 0.6, which pins the normal threshold at 0.957).

    .venv/bin/python reports/loso/cross_fit.py K OUT.npz [EPOCHS]

K patient-grouped, label-stratified folds over each site's train + val (the test splits are never touched);
each fold model trains on every site's other folds, with the training defaults, and predicts its fold."""
import sys, time
sys.path.insert(0, "lambda_src")
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from model_training.lesion_fit import FitConfig, fit, predict_logits
from model_training.loso import split_site
from model_training.sites import load_sites

k, out = int(sys.argv[1]), sys.argv[2]
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else FitConfig().epochs
sites = load_sites(["../shared/data/busi", "../shared/data/busbra"], side=224, cache_dir="runs/cache")
splits = [split_site(s, test_fraction=0.2, seed=42) for s in sites]
folds = []  # per site: fold index of each trainval position
for sp in splits:
    labels = np.array(sp.site.labels)[sp.trainval]
    groups = np.array(sp.site.groups)[sp.trainval]
    f = np.zeros(len(sp.trainval), int)
    for i, (_, hold) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=42).split(labels, labels, groups)):
        f[hold] = i
    folds.append(f)
W = "../shared/weights/mobilenet_v2_1.0_224_imagenet_notop_from_coral_ptq.weights.h5"
cfg = FitConfig(weights=W, epochs=epochs)
rows = {key: [] for key in ("site", "key", "label", "fold", "lesion", "malig", "peak")}
for i in range(k):
    tick = time.time()
    train = [sp.site.subset(sp.trainval[f != i]) for sp, f in zip(splits, folds)]
    fitted = fit(train, cfg, label=f"fold {i + 1}/{k}")
    for sp, f in zip(splits, folds):
        idx = sp.trainval[f == i]
        lg = predict_logits(fitted.model, sp.site.x[idx], flip=True)
        rows["site"] += [sp.site.name] * len(idx)
        rows["key"] += [sp.site.samples[j].key for j in idx]
        rows["label"] += [sp.site.labels[j] for j in idx]
        rows["fold"] += [i] * len(idx)
        rows["lesion"].append(lg["lesion"]); rows["malig"].append(lg["malig"])
        rows["peak"].append(lg["heat"].reshape(len(idx), -1).max(1))
    print(f"fold {i + 1}/{k}: {time.time() - tick:.0f} s", flush=True)
    del fitted
np.savez_compressed(out, site=np.array(rows["site"]), key=np.array(rows["key"]), label=np.array(rows["label"]),
                    fold=np.array(rows["fold"]), lesion_logits=np.concatenate(rows["lesion"], axis=1),
                    malignant_logits=np.concatenate(rows["malig"], axis=1), heat_peak=np.concatenate(rows["peak"]))
print("written", out)
