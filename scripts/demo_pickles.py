"""Make the pickles the demo looks at: what a data-science notebook typically saves.

Usage: python scripts/demo_pickles.py OUTDIR
"""

import datetime as dt
import pickle
import sys
from pathlib import Path

import brinery
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    config = {
        "experiment": "churn-v2",
        "features": ["tenure", "plan", "spend"],
        "thresholds": (0.25, 0.5, 0.75),
        "seed": 42,
        "created": dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC),
        "big": 2**100,
        "tags": {"baseline", "sklearn"},
        "raw": b"\x00\x01binary",
        "nan": float("nan"),
    }
    frame = pd.DataFrame(
        {
            "when": pd.date_range("2026-01-01", periods=5, freq="D", tz="Europe/Paris"),
            "plan": pd.Categorical(["free", "pro", "pro", "team", "free"]),
            "spend": rng.normal(50, 10, 5).round(2),
            "active": [True, False, True, True, False],
        }
    )
    x, y = make_classification(n_samples=200, n_features=4, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)

    # `import brinery as pickle` is a drop-in: same bytes as the stdlib, loads back equal.
    same_as_before = {
        "config": lambda back: pickle.dumps(back) == pickle.dumps(config),  # nan-safe comparison
        "frame": lambda back: back.equals(frame) and back["when"].dt.tz == frame["when"].dt.tz,
        "model": lambda back: (back.predict(x) == model.predict(x)).all(),
    }
    for name, obj in {"config": config, "frame": frame, "model": model}.items():
        data = brinery.dumps(obj, protocol=5)
        same = data == pickle.dumps(obj, protocol=5)
        equal = bool(same_as_before[name](brinery.loads(data)))
        print(f"  {name}.pkl: {len(data):,} bytes; identical to pickle.dumps: {same}; "
              f"brinery.loads gives it back: {equal}")
        if not (same and equal):
            raise SystemExit(f"{name}: brinery is not a drop-in here")
        (out / f"{name}.pkl").write_bytes(data)
    # A damaged file: the model pickle cut in half.
    whole = (out / "model.pkl").read_bytes()
    (out / "damaged.pkl").write_bytes(whole[: len(whole) // 2])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
