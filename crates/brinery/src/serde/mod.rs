//! serde support (being written).
