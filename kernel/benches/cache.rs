//! The result cache's hit path: an L1 lookup of a 10-row result and writing its frames for
//! the client (goal: under 5 µs).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use heliosproxy::cache::{CachedResult, ResultCache};
use heliosproxy::config::CacheConfig;
use heliosproxy::wire::results;

fn ten_rows() -> CachedResult {
    let mut t = Vec::new();
    results::row_description(&mut t, &["id", "name", "price"], &[]);
    let mut rows = Vec::new();
    for i in 0..10 {
        results::data_row(
            &mut rows,
            3,
            &[
                Some(i.to_string()),
                Some(format!("item {i}")),
                Some("12.50".into()),
            ],
        );
    }
    let mut c = Vec::new();
    results::command_complete(&mut c, "SELECT 10");
    CachedResult {
        row_description: t,
        rows,
        row_count: 10,
        complete: c,
        tables: vec!["app\0public.items".into()],
    }
}

fn hit(c: &mut Criterion) {
    let cache = Arc::new(ResultCache::new(&CacheConfig::default()).unwrap());
    let key = [7u8; 32];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pending = runtime.block_on(cache.pending(
        key,
        Duration::from_secs(600),
        vec!["app\0public.items".into()],
    ));
    cache.store(pending, ten_rows());
    let mut out = Vec::with_capacity(4096);
    c.bench_function("cache/l1_hit_10_rows_to_frames", |b| {
        b.iter(|| {
            out.clear();
            let r = cache.get_local(black_box(&key)).expect("stored");
            out.extend_from_slice(&r.row_description);
            out.extend_from_slice(&r.rows);
            out.extend_from_slice(&r.complete);
            black_box(out.len())
        })
    });
    c.bench_function("cache/key_of_a_statement", |b| {
        let session = heliosproxy::cache::SessionKey {
            database: "app",
            server_user: "app",
            role: "",
            search_path: "public",
            state_hash: 42,
        };
        let spelling = [3u8; 32];
        b.iter(|| {
            heliosproxy::cache::key::key(
                black_box(&session),
                black_box(&spelling),
                &[0, 1, 0, 0, 0, 23],
                &[0],
                &[Some(b"17".as_slice())],
                &[1],
            )
        })
    });
}

criterion_group!(benches, hit);
criterion_main!(benches);
