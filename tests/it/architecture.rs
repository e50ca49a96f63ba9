//! Boundaries the design depends on, checked on the source tree.

use std::path::Path;

/// The chat core (`src/chat/`) knows no wire format, framing, I/O or threads: dialects and
/// sinks depend on it, never the other way round. Anything it needs from outside must come
/// in through its own types.
#[test]
fn core_imports_no_wire_format() {
    const FORBIDDEN: &[&str] = &[
        "crate::",
        "websocket::",
        "mio",
        "tungstenite",
        "serde",
        "bytes::",
        "itoa",
        "std::net",
        "std::io",
        "std::thread",
        "crossbeam",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chat");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for word in FORBIDDEN {
                assert!(
                    !code.contains(word),
                    "{}:{}: the chat core must not use `{word}`: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} files under {}", dir.display());
}
