//! docs/configuration.md against the command line itself: a flag or variable added to clap and
//! not to the page fails here, so the page keeps its promise of listing every setting.

use clap::CommandFactory;
use skiff::cli::Cli;
use std::path::Path;

/// Every flag of `command` and its subcommands, with the verb path it belongs to, and every
/// environment variable.
fn settings(command: &clap::Command, verb: &str, flags: &mut Vec<(String, String)>, variables: &mut Vec<String>) {
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long()
            && !matches!(long, "help" | "version")
        {
            flags.push((verb.to_owned(), format!("--{long}")));
        }
        if let Some(variable) = arg.get_env() {
            variables.push(variable.to_string_lossy().into_owned());
        }
    }
    for sub in command.get_subcommands() {
        settings(sub, format!("{verb} {}", sub.get_name()).trim_start(), flags, variables);
    }
}

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every variable and every flag of the host verbs (`serve`, `dev`, and the global ones) is on
/// docs/configuration.md, in backquotes; every flag of the other verbs is on some page of docs/,
/// in its text or an example.
#[test]
fn every_flag_and_variable_is_documented() {
    let (mut flags, mut variables) = (Vec::new(), Vec::new());
    settings(&Cli::command(), "", &mut flags, &mut variables);
    assert!(variables.len() > 40 && flags.len() > 60, "clap lists fewer settings than skiff has: {flags:?}");
    let configuration = page("configuration.md");
    let mentioned = |text: &str, name: &str| {
        // `--name` alone, or after a verb (`serve --name`), or with a value (`--name X`).
        text.contains(&format!("`{name}`"))
            || text.contains(&format!(" {name}`"))
            || text.contains(&format!("`{name} "))
    };
    let mut missing: Vec<String> = variables
        .iter()
        .filter(|variable| !mentioned(&configuration, variable))
        .map(|v| format!("variable {v}"))
        .collect();
    let all_docs: String = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    for (verb, flag) in &flags {
        let host_verb = verb.is_empty() || verb == "serve" || verb == "dev";
        // Other verbs' flags appear in their examples (`skiff swap … --label v2`).
        let in_an_example = [" ", "=", "`", "\n"].iter().any(|after| all_docs.contains(&format!("{flag}{after}")));
        let documented = if host_verb { mentioned(&configuration, flag) } else { in_an_example };
        if !documented {
            missing.push(format!("flag `{verb} {flag}`"));
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "not documented (docs/configuration.md for variables and host flags): {missing:#?}");
}
