"""Calibrate the expert-gap list's threshold (MATCHER_GAP_COVERAGE) and print how it was chosen.

    python benchmarks/gap_threshold.py [--json]

Two sets of demands, ranked against the demo corpus (105 experts, a fresh database):

* covered: the 56 demo demands (corpora/demo/demands.jsonl), each written for experts in the pool;
* uncovered: 30 demands written for this calibration (corpora/calibration/uncovered_demands.jsonl) on
  topics the pool lacks (湖羊疫病, 淡水珍珠, 黄酒酿造, 袜机织造 …), many sharing a word or two with it.

For each demand it takes the best expert as the page ranks them (`Engine.match_demand`, verdicts
off) and two candidate measures of how good that best match is: the fused score itself, and the
share of the demand's term weight the best expert matched (`matcher.gaps.demand_coverage`). It
prints each measure's ROC AUC for telling the two sets apart, and for the coverage the threshold
that maximises Youden's J (true-positive rate - false-positive rate, uncovered = positive), with
the demands it gets wrong. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matcher.config import DEFAULT_CORPORA, Settings  # noqa: E402 - after the path is set
from matcher.engine import Engine  # noqa: E402
from matcher.gaps import demand_coverage  # noqa: E402
from matcher.models import Demand  # noqa: E402


def load(path: Path) -> list[Demand]:
    return [
        Demand.from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="End with one JSON line of the figures.")
    args = parser.parse_args()
    covered = load(DEFAULT_CORPORA / "demo" / "demands.jsonl")
    uncovered = load(DEFAULT_CORPORA / "calibration" / "uncovered_demands.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Settings(db=Path(tmp) / "calib.db"))
        engine.load_demo()
        engine.ensure_index()
        rows = []
        for label, demands in ((0, covered), (1, uncovered)):
            for d in demands:
                cov = demand_coverage(engine, d)
                rows.append((label, d.id, d.title, cov.best_score, cov.coverage))
        engine.close()
    y = np.array([r[0] for r in rows])
    fused = np.array([r[3] for r in rows])
    coverage = np.array([r[4] for r in rows])
    auc_fused = roc_auc_score(y, -fused)  # lower = more likely a gap
    auc_cov = roc_auc_score(y, -coverage)
    fpr, tpr, thresholds = roc_curve(y, -coverage)
    best = int(np.argmax(tpr - fpr))
    # The cut sits between the last flagged coverage and the next one up, rounded to two places.
    flagged = np.sort(coverage[-coverage >= thresholds[best]])
    above = np.sort(coverage[coverage > flagged[-1]])
    cut = round(float((flagged[-1] + above[0]) / 2), 2) if len(above) else round(float(flagged[-1]) + 0.01, 2)
    weak = coverage < cut
    print(f"demands: {int((y == 0).sum())} covered (demo), {int((y == 1).sum())} uncovered (written)")
    print(f"ROC AUC, telling uncovered from covered: fused score {auc_fused:.3f}, coverage {auc_cov:.3f}")
    for name, values in (("fused score", fused), ("coverage", coverage)):
        for label, title in ((0, "covered"), (1, "uncovered")):
            v = values[y == label]
            print(
                f"  {name:<11} {title:<9} min {v.min():7.3f}  median {np.median(v):7.3f}  max {v.max():7.3f}"
            )
    print(f"chosen threshold (Youden's J on coverage): {cut}  -> TPR {tpr[best]:.3f}, FPR {fpr[best]:.3f}")
    print(
        f"  uncovered flagged weak: {int(weak[y == 1].sum())}/{int((y == 1).sum())}; covered flagged weak: "
        f"{int(weak[y == 0].sum())}/{int((y == 0).sum())}"
    )
    for label, did, title, score, cov in rows:
        if bool(cov < cut) != bool(label):
            kind = "covered, flagged weak" if not label else "uncovered, not flagged"
            print(f"  misjudged: {did} {title} ({kind}: coverage {cov:.3f}, fused {score:.2f})")
    if args.json:
        print(
            json.dumps(
                {
                    "auc_fused": round(auc_fused, 4),
                    "auc_coverage": round(auc_cov, 4),
                    "threshold": cut,
                    "tpr": round(float(tpr[best]), 4),
                    "fpr": round(float(fpr[best]), 4),
                }
            )
        )


if __name__ == "__main__":
    main()
