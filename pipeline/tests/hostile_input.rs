//! Issue 14 ("`weft analyze` survives any input"): generated crates that
//! once hung, misread or accepted what rustc rejects. Each runs under the
//! CLI tests' timeout in every mode and asserts the exit status, the
//! diagnostic's text and position, and byte-identical stdout across modes.
//!
//! Covered here: non-regular files as modules or as the path (points 1
//! and 7), the `-j` maximum (point 3), deep syntax (point 4), `MIN % -1`
//! (point 5), circular modules (point 6).

mod common;

use common::{weft, TempDir, MODES};

/// A crate in a fresh directory: `Cargo.toml` with an empty `[workspace]`
/// and `src/lib.rs` = `lib`.
fn krate(name: &str, lib: &str) -> TempDir {
    let t = TempDir::new(name);
    t.write(
        "Cargo.toml",
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
    );
    t.write("src/lib.rs", lib);
    t
}

/// Runs `weft analyze dir -j 2` in every mode; asserts exit `status`, the
/// same stdout in every mode, and returns it.
fn analyze_all_modes(t: &TempDir, status: i32) -> String {
    let dir = t.0.to_str().expect("UTF-8 temp path");
    let mut first: Option<(String, String)> = None;
    for &mode in MODES {
        let run = weft(&["analyze", dir, "--mode", mode, "-j", "2"]);
        assert_eq!(
            run.status, status,
            "{mode}: exit status; stderr:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{mode}: {}", run.stderr);
        match &first {
            None => first = Some((mode.to_string(), run.stdout)),
            Some((m, out)) => assert_eq!(
                &run.stdout,
                out,
                "stdout differs between {m} and {mode}:\n{}",
                common::first_difference(out, &run.stdout)
            ),
        }
    }
    first.expect("at least one mode").1
}

/// Makes a FIFO at `path` (coreutils' `mkfifo`).
#[cfg(unix)]
fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {} failed", path.display());
}

/// Runs `weft args…`; asserts a usage error (exit 2) whose stderr has
/// `message`, and that nothing was analyzed.
fn assert_usage_error(args: &[&str], message: &str) {
    let run = weft(args);
    assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
    assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    assert!(
        !run.stdout.contains("crate "),
        "{args:?} ran: {}",
        run.stdout
    );
}

fn assert_line(out: &str, line: &str) {
    assert!(
        out.lines().any(|l| l == line),
        "no line `{line}` in:\n{out}"
    );
}

/// Point 1: a FIFO as a module file is refused at the `mod` line without
/// being opened (opening it would block forever); the rest is analyzed.
#[cfg(unix)]
#[test]
fn fifo_module_is_refused_at_the_mod_line() {
    let t = krate(
        "fifo",
        "pub const A: u32 = 1;\nmod f;\npub const B: u32 = A + 1;\n",
    );
    let fifo = t.join("src/f.rs");
    mkfifo(&fifo);
    let out = analyze_all_modes(&t, 0);
    assert_line(
        &out,
        "src/lib.rs:2:5: error: cannot load module `f`: `src/f.rs` is a FIFO, not a regular file",
    );
    assert_line(&out, "    B = 2");
}

/// Point 1 (and 7): a FIFO, or `/dev/null`, named as what to analyze is
/// refused with exit 2 and a message that says what it is, never opened.
#[cfg(unix)]
#[test]
fn special_file_as_the_path_is_refused() {
    let t = TempDir::new("fifo-root");
    let fifo = t.join("root.rs");
    mkfifo(&fifo);
    for (path, kind) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/null", "a character device"),
    ] {
        for &mode in MODES {
            let run = weft(&["analyze", path, "--mode", mode]);
            assert_eq!(run.status, 2, "{mode} {path}: {}", run.stderr);
            let expected =
                format!("cannot read `{path}`: it is {kind}, not a directory or a `.rs` file");
            assert!(
                run.stderr.contains(&expected),
                "{mode} {path}: {}",
                run.stderr
            );
        }
    }
}

/// Point 3: `-j` above the documented maximum (1,024) is a usage error
/// (exit 2, a clear message), in `analyze` and in `synth`.
#[test]
fn jobs_above_the_maximum_are_refused() {
    let t = krate("jobs", "pub const A: u32 = 1;\n");
    let dir = t.0.to_str().unwrap();
    for args in [
        vec!["analyze", dir, "-j", "100000"],
        vec!["synth", "--shape", "chain", "-j", "4000"],
    ] {
        assert_usage_error(&args, "is more than the maximum of 1024");
    }
    let run = weft(&["analyze", dir, "-j", "1024"]);
    assert_eq!(run.status, 0, "-j 1024 is allowed: {}", run.stderr);
}

/// Point 5: `MIN % -1` overflows like `MIN / -1` (rustc: E0080); `-7 % -1`
/// is 0.
#[test]
fn min_rem_minus_one_overflows() {
    let t = krate(
        "rem",
        "pub const R64: i64 = i64::MIN % -1;\npub const R32: i32 = i32::MIN % -1;\n\
         pub const R8: i8 = -128 % -1;\npub const FINE: i32 = -7 % -1;\npub const D64: i64 = i64::MIN / -1;\n\
         pub const R128: i128 = i128::MIN % -1;\n",
    );
    let out = analyze_all_modes(&t, 0);
    for (line, name) in [(1, "R64"), (2, "R32"), (3, "R8"), (6, "R128")] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("src/lib.rs:{line}:"))
                && l.ends_with(&format!(
                    "error: cannot evaluate constant `{name}`: attempt to calculate the remainder with overflow"
                ))),
            "no overflow error for {name}:\n{out}"
        );
    }
    assert_line(&out, "    FINE = 0");
    assert!(out.contains("attempt to divide with overflow"), "{out}");
}

/// Point 5: an integer literal out of range is an error whatever its
/// type: above `u128::MAX` ("integer literal is too large", once a warning)
/// as above `i128::MAX`; `u128::MAX` itself is fine.
#[test]
fn too_large_literals_are_errors() {
    let t = krate(
        "literals",
        "pub const U: u128 = 340282366920938463463374607431768211456;\n\
         pub const I: i128 = 170141183460469231731687303715884105728;\n\
         pub const OK: u128 = 340282366920938463463374607431768211455;\n",
    );
    let out = analyze_all_modes(&t, 0);
    assert_line(
        &out,
        "src/lib.rs:1:21: error: cannot evaluate constant `U`: integer literal is too large",
    );
    assert_line(
        &out,
        "src/lib.rs:2:21: error: cannot evaluate constant `I`: literal out of range for `i128`",
    );
    assert_line(&out, "    OK = 340282366920938463463374607431768211455");
}

/// Point 6: `#[path = "lib.rs"] mod me;` inside `lib.rs` is a circular
/// module (an error at the `mod` line, as rustc's "circular modules"); the
/// root is not loaded a second time.
#[test]
fn circular_module_is_an_error() {
    let t = krate(
        "circular",
        "pub const OK: u32 = 7;\n#[path = \"lib.rs\"]\nmod me;\nmod a;\n",
    );
    t.write(
        "src/a.rs",
        "#[path = \"lib.rs\"]\nmod back;\npub const A: u32 = 1;\n",
    );
    let out = analyze_all_modes(&t, 0);
    assert_line(
        &out,
        "src/lib.rs:3:5: error: circular modules: `src/lib.rs` -> `src/lib.rs`",
    );
    assert_line(
        &out,
        "src/a.rs:2:5: error: circular modules: `src/a.rs` -> `src/lib.rs`",
    );
    assert!(!out.contains("me::OK"), "the root was loaded again:\n{out}");
    assert_line(&out, "  files: 2");
}

/// Point 4: syntax nested deep enough to overflow a recursive parser is a
/// diagnostic (never an abort), the same in every mode: the three
/// shapes and others of the same kinds (keyword and postfix chains, blocks
/// as operands). Each sits in a module of its own; the rest of the crate is
/// analyzed.
#[test]
fn deep_syntax_is_a_diagnostic_in_every_mode() {
    let shapes: Vec<(&str, String)> = vec![
        (
            "nots",
            format!("pub const B: bool = {}true;\n", "!".repeat(10_000)),
        ),
        (
            "parens",
            format!("pub const P: i64 = {};\n", vec!["(1)"; 100_000].join("+")),
        ),
        (
            "chain",
            format!(
                "pub fn f(x: Option<Option<u8>>) {{\n    let _ = x{};\n}}\n",
                ".map(Some).flatten()".repeat(50_000)
            ),
        ),
        (
            "blocks",
            format!("pub const K: i64 = {};\n", vec!["{1}"; 50_000].join("+")),
        ),
        (
            "casts",
            format!(
                "pub fn g(x: u8) -> u8 {{\n    x{}\n}}\n",
                " as u8".repeat(20_000)
            ),
        ),
        (
            "tries",
            format!(
                "pub fn h(x: R) -> R {{\n    Ok(x{})\n}}\n",
                "?".repeat(20_000)
            ),
        ),
        (
            "derefs",
            format!(
                "pub fn d(x: u8) -> u8 {{\n    {}x\n}}\n",
                "*".repeat(20_000)
            ),
        ),
    ];
    let mut decls = String::new();
    for (name, _) in &shapes {
        decls.push_str(&format!("mod {name};\n"));
    }
    decls.push_str("pub const STILL: u32 = 41 + 1;\n");
    let t = krate("deep", &decls);
    for (name, text) in &shapes {
        t.write(&format!("src/{name}.rs"), text);
    }
    let out = analyze_all_modes(&t, 0);
    for (name, _) in &shapes {
        let prefix = format!("src/{name}.rs:");
        let line = out
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no diagnostic for {name}:\n{out}"));
        assert!(
            line.ends_with("error: more than 4096 tokens in one statement; file skipped"),
            "{line}"
        );
    }
    assert_line(&out, "    STILL = 42");
}

/// A call chain `f0 → f1 → … → fN` whose last function unwraps.
fn call_chain(n: usize) -> TempDir {
    let mut lib: String = (0..n)
        .map(|i| format!("pub fn f{i}() {{ f{}() }}\n", i + 1))
        .collect();
    lib.push_str(&format!("pub fn f{n}() {{ None::<u8>.unwrap(); }}\n"));
    krate(&format!("chain{n}"), &lib)
}

/// Point 2: the witnesses of a call chain share their rest, so the report
/// grows linearly with the chain (it grew with its square: N = 10,000 took
/// 6.8 GB): doubling the chain at most a little more than doubles the text
/// and the JSON; long witnesses are shortened in the text, whole in the
/// JSON (one table row per step).
#[test]
fn call_chain_witnesses_stay_linear() {
    let small = call_chain(1_000);
    let large = call_chain(2_000);
    let text_small = analyze_all_modes(&small, 0);
    let text_large = analyze_all_modes(&large, 0);
    assert!(
        text_large.len() < text_small.len() * 5 / 2,
        "text: {} bytes for 1,000 functions, {} for 2,000",
        text_small.len(),
        text_large.len()
    );
    assert_line(
        &text_large,
        "    f0: chain2000::f0 -> chain2000::f1 -> chain2000::f2 -> chain2000::f3 -> chain2000::f4 \
         -> … 1992 more … -> chain2000::f1997 -> chain2000::f1998 -> chain2000::f1999 -> \
         chain2000::f2000 -> .unwrap() at src/lib.rs:2001:29",
    );
    let json = |t: &TempDir| {
        let run = weft(&["analyze", t.0.to_str().unwrap(), "--format", "json"]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        run.stdout
    };
    let (json_small, json_large) = (json(&small), json(&large));
    assert!(
        json_large.len() < json_small.len() * 5 / 2,
        "JSON: {} bytes, then {}",
        json_small.len(),
        json_large.len()
    );
    let doc: serde_json::Value = serde_json::from_str(&json_large).expect("JSON");
    let table = doc["crates"][0]["witness_table"].as_array().expect("table");
    assert_eq!(table.len(), 2_002, "one row per function, and the site");
    let mut steps = 0;
    let mut at = doc["crates"][0]["may_panic"][0]["witness"].as_u64();
    while let Some(i) = at {
        steps += 1;
        at = table[i as usize]["next"].as_u64();
    }
    assert_eq!(steps, 2_002, "f0's witness is whole in the JSON");
}

/// Point 7: a symlink loop says what it is (not "file not found"), and a
/// `#[path]` to a directory is reported at its `mod` line.
#[cfg(unix)]
#[test]
fn symlink_loop_and_directory_path_are_reported_at_the_mod_line() {
    let t = krate(
        "links",
        "mod looped;\n#[path = \".\"]\nmod dot;\npub const OK: u32 = 1;\n",
    );
    std::os::unix::fs::symlink("looped.rs", t.join("src/looped.rs")).expect("symlink");
    let out = analyze_all_modes(&t, 0);
    assert!(
        out.lines().any(|l| l.starts_with(
            "src/lib.rs:1:5: error: cannot load module `looped`: `src/looped.rs` cannot be read: "
        ) && l.contains("symbolic links")),
        "{out}"
    );
    assert_line(
        &out,
        "src/lib.rs:3:5: error: cannot load module `dot`: `src` is a directory",
    );
    assert_line(&out, "    OK = 1");
}

/// Point 7: an output path that cannot be written is a usage error before
/// the analysis runs (exit 2, nothing on stdout), for `--trace` and
/// `--timings`, in `analyze` and `synth`.
#[test]
fn unwritable_output_paths_are_refused_before_the_run() {
    let t = krate("outputs", "pub const A: u32 = 1;\n");
    let dir = t.0.to_str().unwrap();
    let bad = t.join("no/such/dir/out.json");
    let bad = bad.to_str().unwrap();
    for args in [
        vec!["analyze", dir, "--trace", bad],
        vec!["analyze", dir, "--timings", bad],
        vec!["synth", "--shape", "chain", "--trace", bad],
    ] {
        assert_usage_error(&args, "cannot write the");
    }
}

/// Point 7: text that does not even split into tokens says where and why
/// (syn's lexer only says "cannot parse string into token stream").
#[test]
fn lexing_problems_say_where_and_why() {
    let t = krate(
        "lexing",
        "mod unclosed;\nmod nul;\nmod mismatched;\nmod extra;\npub const OK: u32 = 1;\n",
    );
    t.write("src/unclosed.rs", "pub fn f() {\n    if true {\n}\n");
    t.write(
        "src/nul.rs",
        "pub const A: u32 = 1;\npub fn g() { let x = 1;\0 }\n",
    );
    t.write(
        "src/mismatched.rs",
        "pub fn h() {\n    let v = [1, 2);\n}\n",
    );
    t.write("src/extra.rs", "pub fn k() {}\n}\n");
    let out = analyze_all_modes(&t, 0);
    for line in [
        "src/unclosed.rs:1:12: error: syntax error: unclosed delimiter `{`",
        "src/nul.rs:2:24: error: syntax error: the file contains a NUL byte",
        "src/mismatched.rs:2:18: error: syntax error: mismatched closing delimiter `)` for `[` opened at 2:13",
        "src/extra.rs:2:1: error: syntax error: unexpected closing delimiter `}`",
    ] {
        assert_line(&out, line);
    }
    assert_line(&out, "    OK = 1");
}

/// Point 7: a `#[path]` out of the crate shows as an absolute path with
/// its `..` resolved (not `src/../../x.rs`); one back into it, relative.
#[test]
fn paths_out_of_the_crate_are_absolute() {
    let outer = TempDir::new("outside");
    outer.write("outside.rs", "pub fn f() { let = 1; }\n");
    let t = krate("paths", "");
    let rel = format!(
        "../../{}/outside.rs",
        outer.0.file_name().unwrap().to_str().unwrap()
    );
    t.write(
        "src/lib.rs",
        format!("#[path = \"{rel}\"]\nmod out;\n#[path = \"../src/inner.rs\"]\nmod inner;\n"),
    );
    t.write("src/inner.rs", "pub fn g() { let = 2; }\n");
    let out = analyze_all_modes(&t, 0);
    let abs = std::fs::canonicalize(outer.join("outside.rs")).unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{}:1:18: error: syntax error", abs.display()))),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("src/inner.rs:1:18: error: syntax error")),
        "{out}"
    );
    assert!(!out.contains("../"), "{out}");
}

/// Points 8 and 9: a crate whose root does not parse says so at the top of
/// its block (not only among the diagnostics at the end), and the report
/// ends with totals and the crates with the most findings.
#[test]
fn unparsable_root_is_named_at_the_top_and_the_report_has_a_summary() {
    let t = krate("rootless", "pub fn f() {\n    let = 1;\n}\n");
    let out = analyze_all_modes(&t, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "crate rootless 0.1.0", "{out}");
    assert!(
        lines[1].starts_with("  root not analyzed: src/lib.rs:2:9: syntax error: "),
        "{out}"
    );
    assert!(
        out.contains("\nsummary: 1 crate, 1 file, 0 items, 0 unresolved imports; 1 diagnostic (1 error); 0 functions, 0 that may panic\n"),
        "{out}"
    );
    assert!(
        out.ends_with("most findings: rootless 0.1.0 (1)\n"),
        "{out}"
    );
    let run = weft(&["analyze", t.0.to_str().unwrap(), "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let e = doc["crates"][0]["root_error"].as_str().expect("root_error");
    assert!(e.starts_with("src/lib.rs:2:9: syntax error: "), "{e}");
}
