//! Reading a secret value from the user (docs/design.md §9).
//!
//! The value moves into a [`SecretValue`] (wiped on drop) as early as
//! possible. Bytes read from stdin or a file sit in a `Zeroizing` buffer
//! sized up front, so that growing it never leaves an unwiped copy behind,
//! and the final string is copied at its exact length for the same reason
//! (`SecretString` shrinks its buffer, which would reallocate). Errors name
//! the source (a flag, a path), never the value.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use zeroize::{Zeroize, Zeroizing};

use crate::value::{MAX_VALUE_BYTES, SecretValue};

use super::args::ValueArgs;

/// Largest `--json-file` read: the JSON form of a maximal value with every
/// character escaped, plus whitespace.
const MAX_JSON_BYTES: usize = 8 * MAX_VALUE_BYTES;

/// The value for secret `name`, from whichever flag was given; with none, a
/// prompt on a terminal, and an error otherwise.
pub fn read_value(args: ValueArgs, name: &str) -> Result<SecretValue> {
    if let Some(v) = args.value {
        eprintln!(
            "warning: --value puts the secret in your shell history and in process listings; \
             prefer --value-stdin or --value-file"
        );
        let v = Zeroizing::new(v);
        return string_value(&v, "--value");
    }
    if args.value_stdin {
        let mut bytes =
            read_bounded(std::io::stdin().lock(), MAX_VALUE_BYTES + 2).context("--value-stdin")?;
        strip_one_newline(&mut bytes);
        return bytes_value(&bytes, "--value-stdin");
    }
    if let Some(path) = &args.value_file {
        let what = format!("--value-file {}", path.display());
        let mut bytes = read_file(path, MAX_VALUE_BYTES + 2).context(what.clone())?;
        strip_one_newline(&mut bytes);
        return bytes_value(&bytes, &what);
    }
    if let Some(path) = &args.json_file {
        let what = format!("--json-file {}", path.display());
        let bytes = read_file(path, MAX_JSON_BYTES).context(what.clone())?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("{what}: the file is not valid UTF-8"))?;
        return SecretValue::from_json_text(text).with_context(|| what.clone());
    }
    if std::io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(format!("Value for secret {name}: "))
                .context("reading the value from the terminal")?,
        );
        return string_value(&typed, "the value typed");
    }
    bail!(
        "no value given for secret '{name}': use --value-stdin, --value-file FILE, --json-file FILE or --value VALUE"
    )
}

fn string_value(s: &str, what: &str) -> Result<SecretValue> {
    SecretValue::from_string(exact_copy(s)).with_context(|| what.to_string())
}

fn bytes_value(bytes: &[u8], what: &str) -> Result<SecretValue> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{what}: value is not valid UTF-8"))?;
    string_value(text, what)
}

/// A `String` whose capacity is exactly its length, so that turning it into
/// a boxed `SecretString` does not reallocate and leave a copy behind.
fn exact_copy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    out.push_str(s);
    out
}

/// Read at most `limit` bytes; more is an error. The buffer is allocated
/// once, so no partial copy of the value is left in freed memory.
fn read_bounded(r: impl Read, limit: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(limit + 1));
    r.take(limit as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > limit {
        buf.zeroize();
        bail!("value is larger than {MAX_VALUE_BYTES} bytes");
    }
    Ok(buf)
}

fn read_file(path: &Path, limit: usize) -> Result<Zeroizing<Vec<u8>>> {
    let f = std::fs::File::open(path)?;
    read_bounded(f, limit)
}

/// Strip exactly one trailing newline (`\n` or `\r\n`), as `echo` adds one.
fn strip_one_newline(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_exactly_one_newline() {
        let mut b = b"abc\n\n".to_vec();
        strip_one_newline(&mut b);
        assert_eq!(b, b"abc\n");
        let mut b = b"abc\r\n".to_vec();
        strip_one_newline(&mut b);
        assert_eq!(b, b"abc");
    }

    #[test]
    fn bounded_read_refuses_oversized_input() {
        let big = [b'x'; 10];
        assert!(read_bounded(&big[..], 9).is_err());
        assert_eq!(read_bounded(&big[..], 10).unwrap().len(), 10);
    }
}
