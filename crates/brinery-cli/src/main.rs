//! The `brinery` command.
fn main() {}
