//! Feeds arbitrary bytes to the startup-packet parser and the frontend message decoder: they
//! must return an error or "need more", never panic or over-read.
#![no_main]

use helios_wire::frame::split_message;
use helios_wire::frontend;
use helios_wire::startup::parse_startup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_startup(data);
    let mut rest = data;
    while let Ok(Some((tag, body))) = split_message(rest, 1 << 20) {
        let _ = frontend::parse(tag, body);
        rest = &rest[5 + body.len()..];
    }
});
