//! `docs/guide.md`'s Rust code, built as a newcomer's app would build it.
//!
//! The `actioncable` crate compiles the guide's blocks as doctests, and doctests see that
//! crate's dev-dependencies (`tokio`'s test utilities, the testing harness, …) and the crates
//! it depends on itself. A reader sees only what section 1 of the guide tells them to add, so a
//! block could pass as a doctest and still fail with "cannot find crate `tracing`" for whoever
//! copies it. This crate is that reader:
//!
//! - its `[dependencies]` are section 1's list, literally (no `workspace = true`, nothing the
//!   guide does not list; only `actioncable`'s path is relative to this package instead of the
//!   repository root), and a unit test compares the two so they cannot drift apart;
//! - `build.rs` turns every block of the guide that rustdoc would compile into a module of this
//!   library, so checking this crate type-checks the whole guide as user code outside the
//!   framework. The blocks are compiled, never run.
//!
//! A block becomes a module by rustdoc's rules: blocks tagged `rust`, `rust,no_run`,
//! `rust,should_panic` or nothing are taken, `ignore` and `compile_fail` ones and other
//! languages (`text`, `toml`, `js`, `sh`) are not; hidden lines (`# code`, a lone `#`) are code;
//! a block without `fn main` becomes the body of `fn main() { … }` (one whose last line ends in
//! `(())` the body of a function returning a `Result`, so `?` works); each module allows
//! `unused`, as rustdoc does. A compile error points at `…/out/guide/line_N.rs:L:C`, where `N`
//! is the line of the block's opening fence and `L` the line in `docs/guide.md`.
//!
//! Check it on its own, `cargo check -p guide-check`, as `scripts/test.sh` does: in a build of
//! the whole workspace Cargo unifies features across members, which could supply a feature that
//! the guide needs and section 1 does not enable.

// The guide's blocks, one module each (see `build.rs`).
include!(concat!(env!("OUT_DIR"), "/guide.rs"));

/// The guide's blocks compiled here: the line of each opening fence and its info string.
pub const COMPILED_BLOCKS: &[(usize, &str)] = include!(concat!(env!("OUT_DIR"), "/blocks.rs"));

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

    fn repository_root() -> PathBuf {
        Path::new(MANIFEST_DIR).join("../..")
    }

    fn guide() -> String {
        let path = repository_root().join("docs/guide.md");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// A dependency as Cargo reads it.
    #[derive(Debug, PartialEq, Eq)]
    struct Dependency {
        version: Option<String>,
        features: BTreeSet<String>,
        default_features: bool,
        /// Canonical, so that paths relative to different directories compare.
        path: Option<PathBuf>,
    }

    /// `[dependencies]` of a manifest, with relative paths resolved against `base`. A key the
    /// comparison does not know (`workspace`, `git`, `optional`, `package`, …) fails the test:
    /// section 1 is what a newcomer's app, outside this workspace, declares.
    fn dependencies(manifest: &str, base: &Path, origin: &str) -> BTreeMap<String, Dependency> {
        let manifest: toml::Table =
            toml::from_str(manifest).unwrap_or_else(|e| panic!("{origin} is not valid TOML: {e}"));
        let table = manifest
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| panic!("{origin} has no [dependencies] table"));
        let mut dependencies = BTreeMap::new();
        for (name, spec) in table {
            let mut dependency = Dependency {
                version: None,
                features: BTreeSet::new(),
                default_features: true,
                path: None,
            };
            match spec {
                toml::Value::String(version) => dependency.version = Some(version.clone()),
                toml::Value::Table(keys) => {
                    for (key, value) in keys {
                        let invalid =
                            format!("{origin}: `{name}.{key}` = {value} is not understood");
                        match key.as_str() {
                            "version" => {
                                dependency.version =
                                    Some(value.as_str().expect(&invalid).to_owned());
                            }
                            "features" => {
                                let features = value.as_array().expect(&invalid);
                                dependency.features = features
                                    .iter()
                                    .map(|f| f.as_str().expect(&invalid).to_owned())
                                    .collect();
                            }
                            "default-features" => {
                                dependency.default_features = value.as_bool().expect(&invalid);
                            }
                            "path" => {
                                let path = base.join(value.as_str().expect(&invalid));
                                let canonical = path.canonicalize().unwrap_or_else(|e| {
                                    panic!("{origin}: `{name}.path` {}: {e}", path.display())
                                });
                                dependency.path = Some(canonical);
                            }
                            _ => panic!(
                                "{origin}: `{name}.{key}`: only version, features, default-features \
                                 and path belong in a newcomer's [dependencies]"
                            ),
                        }
                    }
                }
                other => panic!("{origin}: `{name}` = {other} is not understood"),
            }
            dependencies.insert(name.clone(), dependency);
        }
        dependencies
    }

    /// The TOML block under the heading of section 1.
    fn section_1_toml(guide: &str) -> String {
        let mut lines = guide
            .lines()
            .skip_while(|line| !line.starts_with("## 1. "))
            .skip_while(|line| line.trim() != "```toml")
            .skip(1);
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|line| line.trim() != "```")
            .collect();
        assert!(
            !block.is_empty(),
            "docs/guide.md: no ```toml block found under a heading `## 1. …`"
        );
        block.join("\n")
    }

    #[test]
    fn dependencies_are_section_1_of_the_guide() {
        let guide = dependencies(
            &section_1_toml(&guide()),
            &repository_root(),
            "docs/guide.md, section 1",
        );
        let manifest_path = Path::new(MANIFEST_DIR).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&manifest_path).expect("read Cargo.toml");
        let ours = dependencies(
            &manifest,
            Path::new(MANIFEST_DIR),
            "crates/guide-check/Cargo.toml",
        );

        let mut differences = Vec::new();
        for name in guide.keys().chain(ours.keys()).collect::<BTreeSet<_>>() {
            match (guide.get(name), ours.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    differences.push(format!("`{name}`: guide {a:?}, package {b:?}"))
                }
                (Some(_), None) => differences.push(format!("`{name}`: in the guide only")),
                (None, Some(_)) => differences.push(format!("`{name}`: in the package only")),
                (None, None) => unreachable!(),
            }
        }
        assert!(
            differences.is_empty(),
            "section 1 of docs/guide.md and [dependencies] of crates/guide-check/Cargo.toml \
             must be the same list:\n  {}",
            differences.join("\n  ")
        );
    }

    /// A cross-check of `build.rs`' Markdown reading with the simplest possible one: every
    /// fence at the left margin that opens a `rust` block (not `ignore`, not `compile_fail`)
    /// is compiled. The guide has no other kind of Rust block.
    #[test]
    fn every_rust_block_of_the_guide_is_compiled() {
        let mut in_block = false;
        let mut expected = Vec::new();
        for (index, line) in guide().lines().enumerate() {
            if let Some(info) = line.strip_prefix("```") {
                let rust = info.split(',').next() == Some("rust");
                if !in_block && rust && !info.contains("ignore") && !info.contains("compile_fail") {
                    expected.push(index + 1);
                }
                in_block = !in_block;
            }
        }
        let compiled: Vec<usize> = super::COMPILED_BLOCKS
            .iter()
            .map(|(line, _)| *line)
            .collect();
        assert!(
            expected.len() >= 10,
            "the guide has more Rust blocks than {expected:?}"
        );
        assert_eq!(
            compiled, expected,
            "lines of the guide's compiled Rust blocks"
        );
    }
}
