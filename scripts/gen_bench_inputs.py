"""Write the inputs of the Rust value-model benchmark (bench/rust), pickled by CPython.

Plain data only, so that serde-pickle, the crate we compare with, can read every input.
Usage: python scripts/gen_bench_inputs.py OUTDIR
"""

import pickle
import random
import sys
from pathlib import Path


def inputs() -> dict:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "eta", "théta"]
    records = [
        {
            "id": i,
            "name": f"user{i}",
            "score": rng.random() * 100,
            "active": i % 3 == 0,
            "note": None,
            "tags": [rng.choice(words) for _ in range(3)],
        }
        for i in range(100_000)
    ]
    return {
        "records": (records, 4),
        "floats": ([rng.random() for _ in range(1_000_000)], 4),
        "int_columns": ({f"col{c}": list(range(c, 200_000, 7)) for c in range(7)}, 2),
        "strings": ([f"{rng.choice(words)}-{i}" for i in range(200_000)], 3),
        "blob": (rng.randbytes(16 << 20), 4),
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (obj, protocol) in inputs().items():
        data = pickle.dumps(obj, protocol=protocol)
        (out / f"{name}.pkl").write_bytes(data)
        print(f"{name}.pkl: protocol {protocol}, {len(data):,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
