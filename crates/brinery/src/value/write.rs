//! Writing a Pickle back to bytes (being written).
