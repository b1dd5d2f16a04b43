//! Codec hot paths: framing a batch of server messages and rewriting a Bind.

use criterion::{Criterion, criterion_group, criterion_main};
use heliosproxy::wire::frame::peek_header;
use heliosproxy::wire::messages::BindRef;
use std::hint::black_box;

fn data_rows(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let val = format!("{i:08}");
        out.push(b'D');
        out.extend_from_slice(&((4 + 2 + 4 + val.len()) as i32).to_be_bytes());
        out.extend_from_slice(&1i16.to_be_bytes());
        out.extend_from_slice(&(val.len() as i32).to_be_bytes());
        out.extend_from_slice(val.as_bytes());
    }
    out
}

fn bench(c: &mut Criterion) {
    let rows = data_rows(100);
    c.bench_function("codec/frame_100_data_rows", |b| {
        b.iter(|| {
            let buf = black_box(&rows[..]);
            let mut pos = 0;
            let mut n = 0;
            while let Ok(Some(h)) = peek_header(&buf[pos..], 1 << 30) {
                if buf.len() - pos < h.total {
                    break;
                }
                pos += h.total;
                n += 1;
            }
            n
        })
    });
    let mut bind = b"\0P_1\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&4i32.to_be_bytes());
    bind.extend_from_slice(b"1234");
    bind.extend_from_slice(&0i16.to_be_bytes());
    let mut out = Vec::with_capacity(256);
    c.bench_function("codec/bind_parse_and_rename", |b| {
        b.iter(|| {
            out.clear();
            let parsed = BindRef::parse(black_box(&bind)).unwrap();
            parsed.encode_renamed(&mut out, b"hp_0123456789abcdef");
            out.len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
