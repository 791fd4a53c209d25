import sys, pickle, json; sys.path.insert(0,'lambda_src')
import numpy as np
from model_training.sites import load_sites
from model_training.loso import split_site
from model_training import lesion_pipeline as P
sites = load_sites(['../shared/data/busi','../shared/data/busbra'], side=224, cache_dir='runs/cache')
splits = [split_site(s, test_fraction=0.2, seed=42) for s in sites]
oos = pickle.load(open(f'/tmp/exp/loso_{sys.argv[1]}.pkl','rb'))
cal = P._calibration_set(oos, splits)
calib = P._fit_calibration(cal, oos, splits, 0.90)
print(json.dumps(calib, indent=0))
loso = P._loso_metrics(oos, splits, calib)
for k, m in loso.items():
    print(k, {x: (round(m[x],3) if isinstance(m[x], float) else m[x]) for x in ('auc_malignant','sensitivity','specificity','ece_malignant','lesions_called_normal','accuracy','normals_called_normal') if x in m}, m['localisation'])
    for d, dm in m['devices'].items(): print('   ', d, round(dm['auc_malignant'] or -1,3), round(dm['sensitivity'],3), round(dm['specificity'],3))
