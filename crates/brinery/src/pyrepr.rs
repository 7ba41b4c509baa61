//! Python repr() of str, bytes, int and float (being written).
