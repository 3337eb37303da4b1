//! Placeholder; filled in shortly.
fn main() {}
