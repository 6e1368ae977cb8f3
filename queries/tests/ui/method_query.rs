use weft_queries::{query, Cx};

struct S;

impl S {
    #[query]
    fn parse(&self, _cx: &Cx<'_, ()>, file: u32) -> u32 {
        file
    }
}

fn main() {}
