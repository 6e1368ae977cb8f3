//! Fixture crates in `tests/fixtures/` against their expected reports
//! (`expected.txt` beside each), in every mode and at `-j 1, 2, 4`.
//!
//! To regenerate an expected report after an intended change:
//! `WEFT_BLESS=1 cargo test -p weft-pipeline --test fixtures`.

mod common;

use common::{analyze_everywhere, first_difference, fixtures};

fn check(name: &str, extra: &[&str]) {
    let dir = fixtures().join(name);
    let dir_s = dir.to_str().expect("UTF-8 path").to_string();
    let mut args: Vec<&str> = vec![&dir_s];
    args.extend_from_slice(extra);
    let got = analyze_everywhere(&args);
    let expected_path = dir.join("expected.txt");
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&expected_path, &got).expect("write expected report");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).expect("read expected.txt");
    assert!(
        got == expected,
        "report of fixture `{name}` differs from expected.txt:\n{}\n--- full output ---\n{got}",
        first_difference(&expected, &got)
    );
}

#[test]
fn consts_across_modules_with_overflow_and_division_by_zero() {
    check("consts", &[]);
}

#[test]
fn const_cycles_of_two_and_three_consts_reported_once_each() {
    check("cycles", &[]);
}

#[test]
fn glob_import_cycles_between_parent_and_child_resolve() {
    check("globs", &[]);
}

#[test]
fn missing_mod_file_syntax_error_and_directory_leave_the_rest_analyzed() {
    check("bad_input", &[]);
}

#[test]
fn may_panic_witnesses_are_shortest_and_first_in_source_order() {
    check("panics", &[]);
}

#[test]
fn consts_and_panics_across_two_crates_of_a_workspace() {
    check("workspace", &[]);
}

#[test]
fn cycle_diagnostic_text_is_exact() {
    let expected = std::fs::read_to_string(fixtures().join("cycles/expected.txt")).expect("read");
    let two = "error: cycle detected when evaluating constant `a::A` -> `b::B` -> `a::A`";
    let three =
        "error: cycle detected when evaluating constant `a::X` -> `c::Y` -> `c::Z` -> `a::X`";
    assert_eq!(expected.matches(two).count(), 1, "{expected}");
    assert_eq!(expected.matches(three).count(), 1, "{expected}");
}

#[test]
fn item_macros_wrapping_items_and_cfg_attr_paths() {
    check("macros", &[]);
}
