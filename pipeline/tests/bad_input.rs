//! Bad input never panics and never hangs: each bad file becomes a
//! diagnostic, the exit status stays 0, and the rest of the crate is still
//! analyzed. Bad *paths* (what `weft analyze` is pointed at) exit with 2.
//!
//! Files that should not be committed (not UTF-8, 10 MB) are generated here.

mod common;

use common::{weft, TempDir};

/// A crate whose root declares `mod bad;` (written by the test) next to a
/// good module, so each test can check that the good parts were analyzed.
fn crate_with_bad_module(name: &str, decl: &str) -> TempDir {
    let t = TempDir::new(name);
    t.write(
        "src/lib.rs",
        format!(
            "{decl}\nmod good;\n\npub const STILL_EVALUATED: u32 = good::GOOD + 1;\n\npub fn still_checked() {{\n    good::boom();\n}}\n"
        ),
    );
    t.write(
        "src/good.rs",
        "pub const GOOD: u32 = 41;\n\npub fn boom() {\n    panic!(\"boom\");\n}\n",
    );
    t
}

/// Runs `weft analyze dir` in every mode; asserts exit 0, the diagnostic line,
/// and that the good module was analyzed.
fn assert_diagnosed(t: &TempDir, diagnostic: &str) {
    for &mode in common::MODES {
        let run = weft(&[
            "analyze",
            t.0.to_str().expect("UTF-8 temp path"),
            "--mode",
            mode,
            "-j",
            "2",
        ]);
        assert_eq!(
            run.status, 0,
            "{mode}: exit status; stderr:\n{}",
            run.stderr
        );
        assert!(
            run.stdout.lines().any(|l| l.starts_with(diagnostic)),
            "{mode}: no diagnostic starting with `{diagnostic}` in:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("    STILL_EVALUATED = 42\n"),
            "{mode}: the rest of the crate was not analyzed:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("    still_checked: "),
            "{mode}: may_panic of the rest is missing:\n{}",
            run.stdout
        );
        assert!(!run.stderr.contains("panicked"), "{mode}: {}", run.stderr);
    }
}

#[test]
fn file_that_does_not_parse() {
    let t = crate_with_bad_module("syntax", "mod bad;");
    t.write(
        "src/bad.rs",
        "pub const A: u32 = 1;\npub fn f() {\n    let = 1;\n}\n",
    );
    assert_diagnosed(&t, "src/bad.rs:3:9: error: syntax error: ");
}

#[test]
fn file_with_unbalanced_delimiters() {
    let t = crate_with_bad_module("unbalanced", "mod bad;");
    t.write("src/bad.rs", "pub fn f() {\n    if true {\n}\n");
    assert_diagnosed(&t, "src/bad.rs:");
}

#[test]
fn file_that_is_not_utf8() {
    let t = crate_with_bad_module("utf8", "mod bad;");
    t.write("src/bad.rs", b"pub const A: u32 = 1; // caf\xe9 \xff\xfe\n");
    assert_diagnosed(
        &t,
        "src/bad.rs:1:1: error: file is not valid UTF-8 (invalid byte at offset 28)",
    );
}

#[test]
fn module_file_that_is_missing() {
    let t = crate_with_bad_module("missing", "mod bad;");
    assert_diagnosed(
        &t,
        "src/lib.rs:1:5: error: file not found for module `bad` (looked for `src/bad.rs` and `src/bad/mod.rs`)",
    );
}

#[test]
fn module_file_that_is_a_directory() {
    let t = crate_with_bad_module("directory", "mod bad;");
    std::fs::create_dir_all(t.join("src/bad.rs")).expect("mkdir");
    // At the `mod` line (issue 14): the directory is never read.
    assert_diagnosed(
        &t,
        "src/lib.rs:1:5: error: cannot load module `bad`: `src/bad.rs` is a directory",
    );
}

#[test]
fn module_file_that_cannot_be_read() {
    // A dangling symlink named by `#[path]`: unreadable for every user
    // (permission bits do not stop root, who may run the tests).
    let t = crate_with_bad_module("unreadable", "#[path = \"gone.rs\"]\nmod bad;");
    std::os::unix::fs::symlink(t.join("nowhere/at/all.rs"), t.join("src/gone.rs"))
        .expect("symlink");
    let run = weft(&["analyze", t.0.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("src/gone.rs:1:1: error: cannot read file: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("    STILL_EVALUATED = 42\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn file_of_ten_megabytes() {
    let t = crate_with_bad_module("ten_mb", "mod bad;");
    let mut big = String::with_capacity(10 * 1024 * 1024 + 64);
    let mut i = 0u64;
    while big.len() < 10 * 1024 * 1024 {
        big.push_str(&format!("pub const C{i}: u64 = {i} * 2 + 1;\n"));
        i += 1;
    }
    t.write("src/bad.rs", &big);
    assert_diagnosed(&t, "src/bad.rs:1:1: error: file too large: ");
}

#[test]
fn crate_root_that_is_not_utf8_is_a_diagnostic() {
    let t = TempDir::new("root_utf8");
    let root = t.write("main.rs", b"fn main() { \xff }\n");
    let run = weft(&["analyze", root.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("main.rs:1:1: error: file is not valid UTF-8"),
        "{}",
        run.stdout
    );
}

#[test]
fn unreadable_path_exits_with_2() {
    let t = TempDir::new("paths");
    let missing = t.join("does/not/exist");
    let run = weft(&["analyze", missing.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    // A directory that is not a crate.
    let run = weft(&["analyze", t.0.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a crate"), "{}", run.stderr);

    // A file that is not a `.rs` file.
    let txt = t.write("notes.txt", "hello");
    let run = weft(&["analyze", txt.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);

    // A broken manifest.
    t.write("bad_manifest/Cargo.toml", "[package\nname = ");
    let run = weft(&["analyze", t.join("bad_manifest").to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("cargo metadata"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        vec!["analyze", "--no-such-flag"],
        vec!["analyze", "--mode", "green"],
        vec!["analyze", "-j", "0"],
        vec!["analyze", "--format", "xml"],
        vec!["no-such-command"],
    ] {
        let run = weft(&args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn internal_failure_exits_with_1_and_prints_the_query_stack() {
    let dir = common::fixtures().join("consts");
    for &mode in common::MODES {
        let out = std::process::Command::new(common::weft_bin())
            .args(["analyze", dir.to_str().expect("UTF-8"), "--mode", mode])
            .env("WEFT_INJECT_PANIC", "consts")
            .output()
            .expect("run weft");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mode}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{mode}: no report after an internal failure"
        );
        assert!(
            stderr.contains(
                "internal failure; query stack (outermost first):\n  crate_report(consts)\n"
            ),
            "{mode}: {stderr}"
        );
        assert!(
            stderr.contains("crate_report(0) panicked: injected by WEFT_INJECT_PANIC"),
            "{mode}: {stderr}"
        );
    }
}
