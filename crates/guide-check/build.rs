//! Turns every Rust block of `docs/guide.md` that rustdoc would compile into a module of this
//! crate, the way rustdoc turns it into a doctest (see the crate docs in `src/lib.rs`).
//!
//! Writes, in `OUT_DIR`:
//! - `guide/line_N.rs` for the block whose opening fence is on line `N`: the block's code, on
//!   the same lines as in the guide (the lines before it are blank), so a compile error's line
//!   number is the guide's;
//! - `guide.rs`: one `mod line_N { include!(…) }` per block, included by `src/lib.rs`;
//! - `blocks.rs`: the list of compiled blocks, for the crate's own tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Relative to this package; the path Cargo watches too.
const GUIDE: &str = "../../docs/guide.md";

fn main() {
    println!("cargo::rerun-if-changed={GUIDE}");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by Cargo"));
    let guide_path = manifest_dir.join(GUIDE);
    let guide = fs::read_to_string(&guide_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", guide_path.display()));

    let blocks: Vec<Block> = fenced_blocks(&guide)
        .into_iter()
        .filter(compiled_by_rustdoc)
        .collect();
    assert!(
        !blocks.is_empty(),
        "docs/guide.md: no Rust block found; the extraction in crates/guide-check/build.rs is broken"
    );

    let block_dir = out_dir.join("guide");
    fs::create_dir_all(&block_dir).expect("create OUT_DIR/guide");
    remove_stale(&block_dir, &blocks);
    let mut modules = String::new();
    let mut list = String::from("&[\n");
    for block in &blocks {
        let name = format!("line_{}", block.open_line);
        write_if_changed(
            &block_dir.join(format!("{name}.rs")),
            &doctest_source(block),
        );
        writeln!(
            modules,
            "/// `docs/guide.md` lines {}–{}, section {:?}: a `{}` block.\n\
             #[allow(unused, unreachable_pub)]\n\
             mod {name} {{\n    include!(concat!(env!(\"OUT_DIR\"), \"/guide/{name}.rs\"));\n}}\n",
            block.open_line, block.close_line, block.section, block.info,
        )
        .unwrap();
        writeln!(list, "    ({}, {:?}),", block.open_line, block.info).unwrap();
    }
    list.push(']');
    write_if_changed(&out_dir.join("guide.rs"), &modules);
    write_if_changed(&out_dir.join("blocks.rs"), &list);
}

/// A fenced code block of the guide.
struct Block {
    /// The info string after the opening fence: `rust,no_run`, `toml`, ….
    info: String,
    /// 1-based line numbers of the opening and the closing fence.
    open_line: usize,
    close_line: usize,
    /// The heading the block is under, for the module's doc.
    section: String,
    /// The lines between the fences, with the fence's indentation removed.
    lines: Vec<String>,
}

/// The fenced code blocks (CommonMark: three or more backticks or tildes, indented by at most
/// three spaces, closed by at least as many of the same character). Indented code blocks are
/// not recognised; the guide has none.
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    struct Open {
        fence: char,
        len: usize,
        indent: usize,
        block: Block,
    }
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut open: Option<Open> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if let Some(current) = &mut open {
            let run = rest.len() - rest.trim_start_matches(current.fence).len();
            if indent <= 3 && run >= current.len && rest[run..].trim().is_empty() {
                let mut done = open.take().expect("a block is open").block;
                done.close_line = number;
                blocks.push(done);
            } else {
                let strip = indent.min(current.indent);
                current.block.lines.push(line[strip..].to_owned());
            }
            continue;
        }
        let hashes = rest.len() - rest.trim_start_matches('#').len();
        if indent <= 3 && (1..=6).contains(&hashes) {
            let title = &rest[hashes..];
            if title.is_empty() || title.starts_with([' ', '\t']) {
                section = title.trim().to_owned();
                continue;
            }
        }
        let Some(fence) = rest.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let len = rest.len() - rest.trim_start_matches(fence).len();
        let info = rest[len..].trim();
        if indent > 3 || len < 3 || (fence == '`' && info.contains('`')) {
            continue;
        }
        open = Some(Open {
            fence,
            len,
            indent,
            block: Block {
                info: info.to_owned(),
                open_line: number,
                close_line: 0,
                section: section.clone(),
                lines: Vec::new(),
            },
        });
    }
    if let Some(unclosed) = open {
        panic!(
            "docs/guide.md:{}: a code block is never closed",
            unclosed.block.open_line
        );
    }
    blocks
}

/// rustdoc's reading of the info string (`LangString::parse`): it splits on commas and
/// whitespace; the block is Rust when it is empty, says `rust`, or carries only rustdoc's own
/// attributes; any other word (`text`, `toml`, `js`, `sh`) makes it another language. Of the
/// Rust blocks, `ignore` ones are not compiled, and `compile_fail` ones are compiled to fail,
/// which a module of a crate that must build cannot do, so both are left out.
fn compiled_by_rustdoc(block: &Block) -> bool {
    let mut rust_word = false;
    let mut other_word = false;
    let mut skipped = false;
    for word in block
        .info
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word {
            "rust" | "no_run" | "should_panic" | "standalone_crate" | "edition2024" => {
                rust_word = true;
            }
            "ignore" | "compile_fail" => {
                rust_word = true;
                skipped = true;
            }
            w if w.starts_with("ignore-") => {
                rust_word = true;
                skipped = true;
            }
            w if w.starts_with('E')
                && w.len() == 5
                && w[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                rust_word = true; // an error code, for compile_fail
            }
            w if w == "test_harness" || w.starts_with("edition") || w.starts_with('{') => panic!(
                "docs/guide.md:{}: `{w}` in a code block's info string is not supported by \
                 crates/guide-check/build.rs; teach it, or write the block without it",
                block.open_line
            ),
            _ => other_word = true,
        }
    }
    (rust_word || !other_word) && !skipped
}

/// The block as rustdoc compiles it, on the guide's own line numbers: hidden lines (`# code`)
/// are code, and a block without `fn main` becomes the body of one.
fn doctest_source(block: &Block) -> String {
    let code: Vec<String> = block.lines.iter().map(|line| unhide(line)).collect();
    for (offset, line) in code.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#![") {
            panic!(
                "docs/guide.md:{}: crate attributes (`#![…]`) in a block are not supported by \
                 crates/guide-check/build.rs",
                block.open_line + 1 + offset
            );
        }
    }
    let has_main = code.iter().any(|line| declares_main(line));
    let body = code.join("\n");
    // rustdoc: a block that ends with `(())` returns a `Result`, so `?` works in it.
    let returns_result = body.trim_end().ends_with("(())");
    let (open, close) = match (has_main, returns_result) {
        (true, _) => ("", ""),
        (false, false) => ("fn main() {", "}"),
        (false, true) => (
            "fn main() { fn _inner() -> core::result::Result<(), impl core::fmt::Debug> {",
            "} _inner().unwrap() }",
        ),
    };
    let mut source = String::new();
    // Lines 1 ..= open_line - 1: a note, then blank lines, so the code keeps its line numbers.
    for line in 1..block.open_line {
        if line == 1 {
            source.push_str(
                "// Generated by crates/guide-check/build.rs from docs/guide.md; line numbers are the guide's.",
            );
        }
        source.push('\n');
    }
    source.push_str(open); // on the opening fence's line
    source.push('\n');
    for line in &code {
        source.push_str(line);
        source.push('\n');
    }
    source.push_str(close); // on the closing fence's line
    source.push('\n');
    source
}

/// rustdoc's `map_line`: `# code` and a lone `#` are hidden lines (compiled, not shown), `##`
/// stands for a literal `#`.
fn unhide(line: &str) -> String {
    let trimmed = line.trim();
    if trimmed.starts_with("##") {
        line.replacen("##", "#", 1)
    } else if let Some(hidden) = trimmed.strip_prefix("# ") {
        hidden.to_owned()
    } else if trimmed == "#" {
        String::new()
    } else {
        line.to_owned()
    }
}

/// A top-level `fn main`: a line at the block's left margin declaring it (`fn main(`, `async
/// fn main(`, `pub fn main(`). rustdoc parses the block instead; the guide writes `main` at the
/// margin.
fn declares_main(line: &str) -> bool {
    if line.starts_with(char::is_whitespace) {
        return false;
    }
    let mut words = line.split_whitespace();
    let mut word = words.next();
    while matches!(word, Some("pub" | "async" | "unsafe" | "const")) {
        word = words.next();
    }
    if word != Some("fn") {
        return false;
    }
    words
        .next()
        .and_then(|name| name.strip_prefix("main"))
        .is_some_and(|after| after.is_empty() || after.starts_with(['(', '<']))
}

/// Removes the files of blocks that moved or went away since the last run.
fn remove_stale(dir: &Path, blocks: &[Block]) {
    let current: Vec<String> = blocks
        .iter()
        .map(|block| format!("line_{}.rs", block.open_line))
        .collect();
    for entry in fs::read_dir(dir).expect("read OUT_DIR/guide").flatten() {
        if !current
            .iter()
            .any(|name| entry.file_name() == name.as_str())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Leaves an unchanged file untouched, so Cargo does not rebuild for nothing.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
