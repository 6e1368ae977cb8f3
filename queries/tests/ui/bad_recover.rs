use weft_queries::{query, Cx, Cycle};

// `recover` must return `Option<Value>`.
fn fallback(_cx: &Cx<()>, _cycle: &Cycle, _file: &u32) -> u32 {
    0
}

#[query(recover = fallback)]
fn parse(_cx: &Cx<'_, ()>, file: u32) -> u32 {
    file
}

fn main() {}
