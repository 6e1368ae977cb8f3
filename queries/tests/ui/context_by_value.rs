use weft_queries::{query, Cx};

#[query]
fn parse(_cx: Cx<'_, ()>, file: u32) -> u32 {
    file
}

fn main() {}
