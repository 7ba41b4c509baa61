"""Make the demo project's raw data: data/raw.csv, a customer table with the usual problems
(missing values, a few absurd spenders). Deterministic; run from anywhere."""

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(2026)
n = 4000
tenure = rng.integers(1, 72, n)
visits = rng.poisson(6, n)
spend = rng.gamma(4.0, 20.0, n)
spend[rng.choice(n, 30, replace=False)] *= 50  # outliers: data-entry errors
churn_logit = 1.5 - 0.04 * tenure - 0.15 * visits + 0.004 * spend
churned = rng.random(n) < 1 / (1 + np.exp(-churn_logit))
raw = pd.DataFrame(
    {
        "customer": [f"C{i:05d}" for i in range(n)],
        "joined": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
        "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
        "tenure": tenure,
        "visits": visits,
        "spend": spend.round(2),
        "churned": churned,
    }
)
for col in ("spend", "visits"):
    raw.loc[rng.choice(n, 120, replace=False), col] = np.nan
out = Path(__file__).resolve().parent / "data" / "raw.csv"
out.parent.mkdir(exist_ok=True)
raw.to_csv(out, index=False)
print(f"wrote {out.name}: {len(raw)} rows, {int(raw.isna().any(axis=1).sum())} with missing values")
