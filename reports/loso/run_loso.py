import sys, time, pickle; sys.path.insert(0, 'lambda_src')
import numpy as np
from model_training.sites import load_sites
from model_training.lesion_fit import FitConfig
from model_training.loso import split_site, leave_one_site_out
from sklearn.metrics import roc_auc_score
sites = load_sites(['../shared/data/busi','../shared/data/busbra'], side=224, cache_dir='runs/cache')
splits = [split_site(s, test_fraction=0.2, seed=42) for s in sites]
for sp in splits: print(sp.site.name, len(sp.trainval), len(sp.test), len(sp.excluded))
W='../shared/weights/mobilenet_v2_1.0_224_imagenet_notop_from_coral_ptq.weights.h5'
cfg = FitConfig(weights=W, epochs=int(sys.argv[1]), unfreeze=float(sys.argv[3]))
res = leave_one_site_out(splits, cfg)
pickle.dump(res, open(f'/tmp/exp/loso_{sys.argv[2]}.pkl','wb'))
for r, sp in zip(res, splits):
    lab = np.array(sp.site.labels)[r.idx]
    les = lab != 'normal'
    y = lab[les] == 'malignant'
    m = r.malig.mean(0)[les]
    print(r.site, 'AUC', roc_auc_score(y, m), 'lesions called normal', float((r.lesion.mean(0)[les] < 0).mean()), 's', r.seconds)
