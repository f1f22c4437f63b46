//! Runs the examples in SEMANTICS.md against a real mount: each ```console block's `$` lines
//! are commands, the lines after each are its expected combined output.

mod common;

use common::Mounted;

struct Step {
    command: String,
    expected: Vec<String>,
}

fn examples(doc: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Step>> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```console") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(steps), l) if l.starts_with("$ ") => steps.push(Step {
                command: l[2..].to_string(),
                expected: Vec::new(),
            }),
            (Some(steps), l) => steps
                .last_mut()
                .expect("output before the first command")
                .expected
                .push(l.to_string()),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn semantics_examples_hold() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SEMANTICS.md")).unwrap();
    let blocks = examples(&doc);
    assert!(blocks.len() >= 5, "SEMANTICS.md lost its examples");
    // With extended attributes, which one example shows.
    let m = Mounted::with_args(&["-o", "xattr"]);
    for block in blocks {
        for step in block {
            let out = common::sh_output(&m.mnt, &step.command);
            let mut got = String::from_utf8_lossy(&out.stdout).into_owned();
            got.push_str(&String::from_utf8_lossy(&out.stderr));
            let got: Vec<&str> = got.lines().collect();
            assert_eq!(
                got,
                step.expected,
                "SEMANTICS.md example `{}` printed something else\nregfs log tail:\n{}",
                step.command,
                common::tail(&m.log(), 20)
            );
        }
    }
}
