use weft_queries::{query, Cx};

#[query]
fn parse(_cx: &Cx<'_, ()>, (a, b): (u32, u32)) -> u32 {
    a + b
}

fn main() {}
