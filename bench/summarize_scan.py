"""Print the scanner benchmark (bench/rust/benches/scan.rs) as a Markdown table.

Reads criterion's median estimates for the groups `scan_opcodes` and `scan_bytes` and the
opcode counts the bench printed (a log file). Usage:
python bench/summarize_scan.py CRITERION_DIR BENCH_LOG
"""

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from summarize_rust import cpu_model  # noqa: E402


def fmt_time(secs: float) -> str:
    if secs >= 1e-3:
        return f"{secs * 1e3:,.1f} ms"
    return f"{secs * 1e6:,.2f} µs"


def main() -> None:
    root, log = Path(sys.argv[1]), Path(sys.argv[2]).read_text()
    sizes = {
        m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^(\w+): (\d+) bytes, (\d+) opcodes$", log, re.M)
    }
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores")
    print("Command: `bash bench/run-scan.sh` (criterion medians of `brinery::scan::scan` with all profiles)")
    print()
    print("| input | size | opcodes | time | opcodes/s | bytes/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (size, ops) in sizes.items():
        est = root / "scan_opcodes" / "scan" / name / "new" / "estimates.json"
        secs = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
        print(
            f"| {name} | {size / 1e6:,.1f} MB | {ops:,} | {fmt_time(secs)} "
            f"| {ops / secs / 1e6:,.1f} M/s | {size / secs / 1e9:,.2f} GB/s |"
        )


if __name__ == "__main__":
    main()
