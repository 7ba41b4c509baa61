//! JSON export (being written).
