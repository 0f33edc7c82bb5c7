//! The README's API table against the proto: every RPC has a row, the row names one of the
//! RPC's REST bindings, and the table names no RPC the proto does not have. (The "Adding an
//! RPC" checklist in the README relies on this test to catch a forgotten row.)

use std::collections::BTreeSet;

use super::proto::http_rules;

/// The rows of the table that starts with `| RPC | mirrors |`: (RPC names, mirrors column).
fn api_table() -> Vec<(Vec<String>, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    readme
        .lines()
        .skip_while(|line| !line.starts_with("| RPC | mirrors |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let names = cells[1]
                .split(',')
                .map(|name| name.split_whitespace().next().unwrap_or("").to_owned())
                .collect();
            (names, cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_readme_api_table_has_a_row_for_every_rpc_with_its_rest_path() {
    let table = api_table();
    assert!(!table.is_empty(), "README.md: no '| RPC | mirrors |' table");
    let rules = http_rules();
    let rpcs: BTreeSet<&str> = rules.iter().map(|(rpc, _, _)| rpc.as_str()).collect();
    for rpc in &rpcs {
        let row = table
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == rpc))
            .unwrap_or_else(|| panic!("README.md API table: no row for {rpc}"));
        let bindings: Vec<String> = rules
            .iter()
            .filter(|(r, _, _)| r == rpc)
            .map(|(_, verb, path)| format!("{verb} {path}"))
            .collect();
        assert!(
            bindings.iter().any(|b| row.1.contains(b.as_str())),
            "README.md API table: the row of {rpc} names none of {bindings:?}"
        );
    }
    for (names, _) in &table {
        for name in names {
            assert!(
                rpcs.contains(name.as_str()),
                "README.md API table names {name}, which the proto does not have"
            );
        }
    }
}
