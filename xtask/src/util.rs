//! Small helpers shared by the subcommands: paths, running commands, option parsing.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the parent of `xtask/`). `cargo run` (the `cargo xtask` alias) sets
/// `CARGO_MANIFEST_DIR` when it starts us: that one is used first, so that a binary built from
/// another checkout sharing the target directory (a git worktree) still works on this one.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or(manifest_dir)
}

/// The `cargo` that runs us (so that `cargo xtask` under rustup uses the same toolchain).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Prints a banner for a step, so that the log says clearly what runs.
pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Whether `command` starts and exits with success (a probe: nothing echoed, no error).
pub fn succeeds(command: &mut Command) -> bool {
    command.status().is_ok_and(|s| s.success())
}

/// Runs `command` in the repository root, echoing it; fails when it exits non-zero.
pub fn run(command: &mut Command) -> Result<()> {
    command.current_dir(repo_root());
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// `program arg arg …` for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Whether `program` is found on `PATH` (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The value of option `--name VALUE` / `--name=VALUE` in `args`, if given.
pub fn option_value(args: &[String], name: &str) -> Result<Option<String>> {
    let prefix = format!("{name}=");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == name {
            return match iter.next() {
                Some(value) => Ok(Some(value.clone())),
                None => bail!("option {name} needs a value"),
            };
        }
        if let Some(value) = arg.strip_prefix(&prefix) {
            return Ok(Some(value.to_owned()));
        }
    }
    Ok(None)
}

/// Whether flag `name` is in `args`.
pub fn has_flag(args: &[String], name: &str) -> bool {
    args.iter().any(|arg| arg == name)
}
