//! Scripts in another language as test oracles: values made by Rails' own Ruby code or by
//! Node's `crypto`, read back as JSON.
//!
//! A test that compares our output with another implementation's must never pass because the
//! other one is missing: [`run_json_script`] fails the test, naming the Debian packages to
//! install, when the interpreter or a library the script requires is not there.

use crate::timing::WAIT;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one script may run: interpreters start slowly on a loaded machine.
const SCRIPT_LIMIT: Duration = Duration::from_secs(30);

/// Runs `interpreter script` with `request` as JSON on its standard input and returns the JSON
/// it prints. `install` names what to install when the interpreter or a library is missing
/// (e.g. `"ruby ruby-activesupport"`), for the failure message.
///
/// # Panics
/// When the interpreter is missing, a library cannot be loaded (Ruby's `cannot load such
/// file`, Node's `Cannot find module`), the script fails or runs longer than 30 s, or its output
/// is not JSON; the message says which, with the script's error output.
pub fn run_json_script(interpreter: &str, script: &str, request: &Value, install: &str) -> Value {
    let mut child = match Command::new(interpreter)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{interpreter}` is not installed, and this test compares with what it computes: \
             install Debian's packages `{install}` (`apt-get install {install}`; \
             scripts/test.sh does it by itself)"
        ),
        Err(e) => panic!("cannot start {interpreter} {script}: {e}"),
    };
    let input = request.to_string();
    let mut stdin = child.stdin.take().expect("the script's stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = child.stdout.take().expect("the script's stdout");
    let mut stderr = child.stderr.take().expect("the script's stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{interpreter} {script} ran longer than {SCRIPT_LIMIT:?}");
        }
        std::thread::sleep(WAIT / 500);
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let missing = stderr.contains("cannot load such file") || stderr.contains("Cannot find");
        if missing {
            panic!(
                "{interpreter} {script} is missing a library: install Debian's packages \
                 `{install}` (`apt-get install {install}`; scripts/test.sh does it by itself). \
                 Its error:\n{stderr}"
            );
        }
        panic!("{interpreter} {script} failed ({status}):\n{stderr}");
    }
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{interpreter} {script} printed no JSON ({e}):\n{stdout}\n{stderr}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "is not installed, and this test compares with what it computes: \
                               install Debian's packages `ruby-nonesuch`"
    )]
    fn a_missing_interpreter_fails_with_what_to_install() {
        run_json_script(
            "an-interpreter-that-is-not-there",
            "script.rb",
            &Value::Null,
            "ruby-nonesuch",
        );
    }
}
