use weft_queries::{query, Cx};

#[derive(Clone, Debug, PartialEq, Eq)]
struct NotHash(u32);

#[query]
fn parse(_cx: &Cx<'_, ()>, file: NotHash) -> u32 {
    file.0
}

fn main() {}
