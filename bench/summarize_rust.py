"""Print the value-model benchmark as a Markdown table of throughputs and ratios.

Reads criterion's estimates (median) from CRITERION_DIR for the groups `read` and `write`.
Usage: python bench/summarize_rust.py CRITERION_DIR INPUTS_DIR
"""

import json
import os
import platform
import sys
from pathlib import Path

INPUTS = ["records", "floats", "int_columns", "strings", "blob"]
CONTENDERS = ["brinery", "serde-pickle"]


def median_seconds(root: Path, group: str, contender: str, name: str) -> float:
    path = root / group / contender / name / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e9


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(root: Path, inputs: Path) -> None:
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print("Command: `bash bench/run-rust.sh` (criterion medians; MB/s of pickle bytes)\n")
    for group in ["read", "write"]:
        print(f"| {group} | size | brinery | serde-pickle | brinery / serde-pickle |")
        print("|---|---:|---:|---:|---:|")
        total = {c: 0.0 for c in CONTENDERS}
        total_bytes = 0
        for name in INPUTS:
            size = (inputs / f"{name}.pkl").stat().st_size
            secs = {c: median_seconds(root, group, c, name) for c in CONTENDERS}
            for c in CONTENDERS:
                total[c] += secs[c]
            total_bytes += size
            mbps = {c: size / secs[c] / 1e6 for c in CONTENDERS}
            ratio = secs["serde-pickle"] / secs["brinery"]
            print(
                f"| {name} | {size / 1e6:.1f} MB | {mbps['brinery']:,.0f} MB/s "
                f"| {mbps['serde-pickle']:,.0f} MB/s | **{ratio:.2f}x** |"
            )
        ratio = total["serde-pickle"] / total["brinery"]
        print(
            f"| all inputs | {total_bytes / 1e6:.1f} MB | {total_bytes / total['brinery'] / 1e6:,.0f} MB/s "
            f"| {total_bytes / total['serde-pickle'] / 1e6:,.0f} MB/s | **{ratio:.2f}x** |\n"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
