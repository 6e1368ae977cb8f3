use weft_queries::{query, Cx};

#[query]
fn parse<T: Clone>(_cx: &Cx<'_, ()>, _file: T) -> u32 {
    1
}

fn main() {}
