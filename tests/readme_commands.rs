//! README's two commands are what they claim to be: the first is the demo
//! run (driven end to end by tests/demo.rs), the second is the script that
//! `.ci/run` runs verbatim in a clean clone with an empty venv cache, and
//! every page README links to exists.

use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The shell lines (not comments) of the code block under "## Two commands".
fn two_commands() -> Vec<String> {
    let readme = read("README.md");
    let section = readme
        .split("\n## Two commands\n")
        .nth(1)
        .expect("README has a `## Two commands` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section opens with a ```sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn readme_has_exactly_the_demo_and_the_test_script() {
    assert_eq!(
        two_commands(),
        [
            "cargo run --release -- run --config configs/demo.toml",
            ".ci/test"
        ]
    );
}

#[test]
fn ci_runs_readme_test_command_in_a_clean_clone_with_an_empty_cache() {
    let run = read(".ci/run");
    let code: Vec<&str> = run
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        code.iter().any(|l| l.starts_with("git clone")),
        ".ci/run clones the checkout"
    );
    assert!(
        code.iter()
            .any(|l| l.contains("W2C_CI_CACHE=\"$work/cache\"")),
        ".ci/run points the venv cache at an empty directory"
    );
    let last = code.iter().rev().find(|l| !l.is_empty()).unwrap();
    assert_eq!(*last, r#"(cd "$work/clone" && .ci/test)"#);
    // The script sets up every external part before the suite.
    let test = read(".ci/test");
    for step in [
        "pip install",
        "-r requirements-test.txt",
        ".ci/llama_venv.sh",
        ".ci/lmeval_venv.sh",
        "cargo test --locked",
    ] {
        assert!(test.contains(step), ".ci/test lacks `{step}`");
    }
    let pos = |s: &str| test.find(s).unwrap();
    assert!(pos(".ci/lmeval_venv.sh") < pos("cargo test --locked"));
}

#[test]
fn every_local_link_in_readme_and_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            pages.push(p);
        }
    }
    let link = regex::Regex::new(r"\]\(([^)#][^)]*?)(#[^)]*)?\)").unwrap();
    let mut missing = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for c in link.captures_iter(&text) {
            let target = &c[1];
            if target.starts_with("http") {
                continue;
            }
            let p = page.parent().unwrap().join(target);
            if !p.exists() {
                missing.push(format!("{} -> {target}", page.display()));
            }
        }
    }
    assert!(missing.is_empty(), "broken links: {missing:#?}");
}
