//! The command protocol's parser runs on the net thread for every message a protocol client
//! sends, so any bytes at all must come back as a `Command` or a `ParseError`, never as a panic
//! (a panic there takes the whole server down).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = websocket::dialect::protocol::codec::parse(data);
});
