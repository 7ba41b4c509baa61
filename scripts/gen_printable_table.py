#!/usr/bin/env python3
"""Generate crates/brinery/src/unicode_printable.rs from this Python's str.isprintable().

Run from the repository root with the Python whose repr() brinery mirrors (CPython 3.11):

    python3 scripts/gen_printable_table.py

The output is a sorted table of inclusive (first, last) code point ranges for which
``chr(c).isprintable()`` is true, plus a binary search over it.
"""

import sys
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "crates" / "brinery" / "src" / "unicode_printable.rs"


def ranges():
    start = None
    for cp in range(0x110000 + 1):
        printable = cp < 0x110000 and chr(cp).isprintable()
        if printable and start is None:
            start = cp
        elif not printable and start is not None:
            yield start, cp - 1
            start = None


def main():
    table = list(ranges())
    lines = [
        "//! Which code points Python's `str.isprintable()` accepts.",
        "//!",
        "//! GENERATED FILE, do not edit. Regenerate from the repository root with",
        "//! `python3 scripts/gen_printable_table.py`",
        f"//! (generated with Python {sys.version.split()[0]}, Unicode {unicodedata.unidata_version}).",
        "",
        "/// Sorted, disjoint, inclusive ranges of printable code points.",
        "static PRINTABLE: &[(u32, u32)] = &[",
    ]
    for first, last in table:
        lines.append(f"    (0x{first:04X}, 0x{last:04X}),")
    lines += [
        "];",
        "",
        "/// Whether `cp` is printable in the sense of Python's `str.isprintable()` (what `repr` keeps",
        "/// as is rather than escaping).",
        "pub(crate) fn is_printable(cp: u32) -> bool {",
        "    PRINTABLE",
        "        .binary_search_by(|&(first, last)| {",
        "            if last < cp {",
        "                std::cmp::Ordering::Less",
        "            } else if first > cp {",
        "                std::cmp::Ordering::Greater",
        "            } else {",
        "                std::cmp::Ordering::Equal",
        "            }",
        "        })",
        "        .is_ok()",
        "}",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {len(table)} ranges to {OUT}")


if __name__ == "__main__":
    main()
