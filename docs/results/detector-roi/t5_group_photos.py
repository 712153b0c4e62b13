import cv2, numpy as np
from occluface.faces.detect import create_detector
from occluface.faces.base import iou
from pathlib import Path
S = Path("../shared/data/samples")
a, r = create_detector("auto"), create_detector("auto-roi")
tot_a = tot_hit = 0
for name in ["fr_obama_and_biden.jpg", "fr_two_people_obama_biden.jpg", "fr_kit_with_rose.jpg", "insightface_t1_group6.jpg"]:
    img = cv2.cvtColor(cv2.imread(str(S / name)), cv2.COLOR_BGR2RGB)
    fa, fr = a.detect(img), r.detect(img)
    hit = sum(1 for f in fa if fr and iou(f.box, np.stack([g.box for g in fr])).max() >= 0.5)
    tot_a += len(fa); tot_hit += hit
    print(f"{name} {img.shape[1]}x{img.shape[0]}: auto {len(fa)} faces, auto-roi {len(fr)} faces, auto's faces found by auto-roi {hit}/{len(fa)}  ({[f.detector for f in fr]})")
print(f"T5 {'pass' if tot_hit == tot_a else 'FAIL'}: {tot_hit}/{tot_a}")
