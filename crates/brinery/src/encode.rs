//! The opcode writer (being written).
