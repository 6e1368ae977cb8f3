use weft_queries::{query, Cx};

#[query]
fn check(_cx: &Cx<'_, ()>, _file: u32) {}

fn main() {}
