use weft_queries::query;

#[query]
fn parse() -> u32 {
    1
}

fn main() {}
