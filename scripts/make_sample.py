"""Rebuild the small bundled sample under data/ from ../shared/data (deterministic).

Usage: python scripts/make_sample.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
DST = ROOT / "data"

YALE_SUBJECTS = [f"yaleB{i:02d}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
# Light directions from mild to harsh, the same ten for every subject (azimuth, elevation).
YALE_ANGLES = ["+000E+00", "+010E+00", "-010E+00", "+020E-10", "-020E+10",
               "+025E+00", "-025E+00", "+035E+15", "-050E+00", "+060E+20"]


def copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def main() -> None:
    for subject in YALE_SUBJECTS:
        for angle in YALE_ANGLES:
            name = f"{subject}_P00A{angle}.png"
            copy(SRC / "yaleb" / subject / name, DST / "yaleb" / subject / name)
    lfw = sorted(p for p in (SRC / "lfw_dev").iterdir() if p.is_dir())
    chosen = [p for p in lfw if len(list(p.glob("*.jpg"))) >= 3][:10]
    for person in chosen:
        for img in sorted(person.glob("*.jpg"))[:3]:
            copy(img, DST / "lfw" / person.name / img.name)
    # Keep one file of each byte-identical group (the TSV lists group, sha256, file).
    seen_groups: set[str] = set()
    dups: set[str] = set()
    for line in (SRC / "rwmfd_masked_duplicates.tsv").read_text().splitlines()[1:]:
        group, _sha, file = line.split("\t")
        if group in seen_groups:
            dups.add(file)
        seen_groups.add(group)
    masked = [p for p in sorted((SRC / "rwmfd_masked" / "0000").glob("*.jpg"))
              if f"rwmfd_masked/0000/{p.name}" not in dups][:12]
    for img in masked:
        copy(img, DST / "real_masked" / img.name)
    for cls in ("with_mask", "without_mask"):
        for img in sorted((SRC / "mask_cls" / cls).glob("*.jpg"))[:8]:
            copy(img, DST / "mask_cls" / cls / img.name)
    for tex in sorted((SRC / "mask_textures").glob("*.png")):
        copy(tex, DST / "mask_textures" / tex.name)
    for name in ("fr_obama.jpg", "fr_biden.jpg", "fr_two_people_obama_biden.jpg",
                 "fr_kit_harington.jpeg", "fr_rose_leslie.jpg", "fr_kit_with_rose.jpg"):
        copy(SRC / "samples" / name, DST / "samples" / name)


if __name__ == "__main__":
    main()
