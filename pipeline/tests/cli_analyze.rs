//! `weft analyze` end to end: the JSON schema, stderr behaviour, the default
//! path, and byte-identical output on real crates in every mode and at
//! `-j 1, 2, 4`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{analyze_everywhere, fixtures, weft};
use serde_json::Value;

/// The steps of the witness that starts at row `start` of a crate's
/// `witness_table` (each row: `step`, and `next`, a row or `null`).
fn witness_steps(table: &[Value], start: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = start.as_u64();
    while let Some(i) = at {
        let row = &table[i as usize];
        out.push(row["step"].as_str().expect("step is a string").to_owned());
        at = row["next"].as_u64();
        assert!(out.len() <= table.len(), "a witness loops");
    }
    out
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("missing field `{key}` in {v}"))
}

fn is_pos(v: &Value) {
    assert!(field(v, "file").is_string(), "{v}");
    assert!(field(v, "line").as_u64().is_some_and(|n| n >= 1), "{v}");
    assert!(field(v, "col").as_u64().is_some_and(|n| n >= 1), "{v}");
}

/// Checks one document against the schema documented in the README.
fn check_schema(doc: &Value) {
    let crates = field(doc, "crates").as_array().expect("crates[]");
    assert!(!crates.is_empty());
    for c in crates {
        assert!(field(c, "name").is_string(), "{c}");
        let version = field(c, "version");
        assert!(version.is_string() || version.is_null(), "{c}");
        assert!(field(c, "root").is_string());
        for key in ["files", "modules", "items", "functions", "unknown_consts"] {
            assert!(field(c, key).is_u64(), "{key} in {c}");
        }
        for u in field(c, "unresolved_imports")
            .as_array()
            .expect("unresolved_imports[]")
        {
            assert!(field(u, "path").is_string());
            is_pos(u);
        }
        for k in field(c, "consts").as_array().expect("consts[]") {
            assert!(field(k, "path").is_string());
            let value = field(k, "value").as_str().expect("value is a string");
            assert!(
                value.parse::<i128>().is_ok() || value.parse::<u128>().is_ok(),
                "{value}"
            );
        }
        let table = field(c, "witness_table")
            .as_array()
            .expect("witness_table[]");
        for p in field(c, "may_panic").as_array().expect("may_panic[]") {
            assert!(field(p, "path").is_string());
            let w = witness_steps(table, field(p, "witness"));
            assert!(w.len() >= 2, "a function and a site: {p}");
        }
    }
    for d in field(doc, "diagnostics").as_array().expect("diagnostics[]") {
        is_pos(d);
        let sev = field(d, "severity").as_str().expect("severity");
        assert!(["error", "warning", "note"].contains(&sev), "{sev}");
        assert!(field(d, "message").is_string());
    }
}

#[test]
fn json_output_parses_and_matches_the_documented_schema() {
    for fixture in ["workspace", "consts", "cycles", "bad_input"] {
        let dir = fixtures().join(fixture);
        let run = weft(&["analyze", dir.to_str().expect("UTF-8"), "--format", "json"]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
        check_schema(&doc);
    }
}

#[test]
fn json_and_text_carry_the_same_findings() {
    let dir = fixtures().join("workspace");
    let dir = dir.to_str().expect("UTF-8");
    let json = weft(&["analyze", dir, "--format", "json"]);
    let text = weft(&["analyze", dir]);
    let doc: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let crates = doc["crates"].as_array().expect("crates");
    assert_eq!(crates.len(), 2);
    assert_eq!(crates[0]["name"], "alpha");
    assert_eq!(crates[0]["version"], "0.1.0");
    assert_eq!(crates[1]["name"], "beta");
    let beta_consts: Vec<(String, String)> = crates[1]["consts"]
        .as_array()
        .expect("consts")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (path, value) in &beta_consts {
        assert!(
            text.stdout.contains(&format!("    {path} = {value}\n")),
            "{path}"
        );
    }
    assert!(beta_consts.contains(&("DOUBLE_LIMIT".to_string(), "128".to_string())));
    let table = crates[1]["witness_table"]
        .as_array()
        .expect("witness_table");
    let witness = witness_steps(table, &crates[1]["may_panic"][0]["witness"]);
    assert_eq!(witness[0], "beta::first");
    assert_eq!(witness[1], "alpha::checked_get");
    for d in doc["diagnostics"].as_array().expect("diagnostics") {
        let line = format!(
            "{}:{}:{}: {}: {}",
            d["file"].as_str().unwrap(),
            d["line"],
            d["col"],
            d["severity"].as_str().unwrap(),
            d["message"].as_str().unwrap()
        );
        assert!(text.stdout.contains(&line), "{line}");
    }
}

#[test]
fn stderr_has_only_the_summary_when_not_a_terminal() {
    let dir = fixtures().join("consts");
    let run = weft(&["analyze", dir.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with("weft: analyzed 1 crates (4 files) in "),
        "{}",
        lines[0]
    );
}

#[test]
fn path_defaults_to_the_current_directory() {
    let dir = fixtures().join("globs");
    let out = Command::new(common::weft_bin())
        .arg("analyze")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run weft");
    assert_eq!(out.status.code(), Some(0));
    let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    assert_eq!(String::from_utf8(out.stdout).expect("UTF-8"), expected);
}

/// The source directory of a package that Weft itself depends on (so it is
/// in the local cargo registry without a download).
fn registry_package(name: &str, major: u64) -> PathBuf {
    let meta = cargo_metadata::MetadataCommand::new()
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .exec()
        .expect("cargo metadata");
    let pkg = meta
        .packages
        .iter()
        .find(|p| p.name == name && p.version.major == major)
        .unwrap_or_else(|| panic!("{name} {major}.x is not a dependency"));
    pkg.manifest_path
        .parent()
        .expect("package dir")
        .to_path_buf()
        .into_std_path_buf()
}

#[test]
fn corpus_subset_is_byte_identical_in_every_mode_and_thread_count() {
    // syn 2 is one of the pinned corpus crates, and a dependency of Weft.
    let syn = registry_package("syn", 2);
    let out = analyze_everywhere(&[syn.to_str().expect("UTF-8")]);
    assert!(
        out.starts_with("crate syn 2."),
        "{}",
        &out[..out.len().min(200)]
    );
    assert!(out.contains("  may panic: "));
}

#[test]
fn weft_workspace_is_byte_identical_in_every_mode_and_thread_count() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = analyze_everywhere(&[root]);
    assert!(out.contains("crate weft_pipeline "), "{out}");
}

#[test]
fn workspace_with_deps_is_byte_identical_in_every_mode_and_thread_count() {
    let dir = fixtures().join("workspace");
    let out = analyze_everywhere(&[dir.to_str().expect("UTF-8"), "--deps"]);
    assert!(out.contains("crate alpha 0.1.0"));
    assert!(out.contains("crate beta 0.2.0"));
}

/// The full pinned corpus (`bench/corpus`, ~110 crates) in every mode and at
/// `-j 1, 2, 4`. Ignored by default: the first run downloads the corpus
/// sources into the cargo registry and a debug build takes minutes. Run with
/// `cargo test -p weft-pipeline --test cli_analyze -- --ignored`.
#[test]
#[ignore = "downloads and analyzes the full corpus; run in CI or by hand"]
fn full_corpus_is_byte_identical_in_every_mode_and_thread_count() {
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/corpus");
    let out = analyze_everywhere(&[corpus, "--deps"]);
    assert!(out.contains("crate tokio "), "tokio is part of the corpus");
    assert!(
        out.contains("crate syn 2.0.110"),
        "syn is pinned at 2.0.110"
    );
}

#[test]
fn a_rs_file_is_a_crate_root() {
    let file = fixtures().join("panics/src/util.rs");
    let run = weft(&["analyze", file.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("crate util\n  root: util.rs\n  files: 1\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("    checked: util::checked -> assert! at util.rs:2:5\n"),
        "{}",
        run.stdout
    );
}

/// With a terminal on stderr, a progress bar (crates and files done) is
/// drawn there. Needs util-linux `script` for the pseudo-terminal; skipped
/// where it is missing.
#[test]
fn progress_bar_on_stderr_when_it_is_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to provide a terminal");
        return;
    }
    let dir = fixtures().join("workspace");
    let inner = format!(
        "{} analyze {} --deps > /dev/null",
        common::weft_bin().display(),
        dir.display()
    );
    let out = Command::new("timeout")
        .args(["120", "script", "-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    assert_eq!(out.status.code(), Some(0));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("crates, "), "no progress bar drawn: {tty:?}");
    assert!(tty.contains("weft: analyzed 2 crates"), "{tty:?}");
}

#[test]
fn a_member_directory_analyzes_that_package_and_deps_adds_its_dependencies() {
    let beta = fixtures().join("workspace/beta");
    let beta = beta.to_str().expect("UTF-8");
    let alone = weft(&["analyze", beta]);
    assert_eq!(alone.status, 0, "{}", alone.stderr);
    assert!(
        alone.stdout.starts_with("crate beta 0.2.0\n"),
        "{}",
        alone.stdout
    );
    assert!(!alone.stdout.contains("crate alpha"), "{}", alone.stdout);
    // Without --deps, `alpha` is a declared dependency that is not analyzed:
    // its paths are external (a warning on the const), never unresolved imports.
    assert!(
        alone.stdout.contains("cannot evaluate constant `DOUBLE_LIMIT`: `alpha::LIMIT` is outside the analyzed crates"),
        "{}",
        alone.stdout
    );
    assert!(
        alone.stdout.contains("  unresolved imports: 1\n"),
        "{}",
        alone.stdout
    );
    let with_deps = weft(&["analyze", beta, "--deps"]);
    assert_eq!(with_deps.status, 0, "{}", with_deps.stderr);
    assert!(
        with_deps.stdout.starts_with("crate alpha 0.1.0\n"),
        "{}",
        with_deps.stdout
    );
    assert!(
        with_deps.stdout.contains("    DOUBLE_LIMIT = 128\n"),
        "{}",
        with_deps.stdout
    );
}
