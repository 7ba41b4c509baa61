//! pickletools-compatible disassembly (being written).
