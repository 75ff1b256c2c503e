#![expect(missing_docs, reason = "criterion macros generate undocumented items")]
//! Micro-benchmarks of hot paths that need no server: hashing a pushed body, parsing
//! digests and names, and routing a `/v2/…` path.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

fn hashing(c: &mut Criterion) {
    let data = vec![7u8; 16 * 1024 * 1024];
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sha256 16 MiB in 64 KiB chunks", |b| {
        b.iter(|| {
            let mut h = berth_types::Hasher::new(berth_types::Algorithm::Sha256);
            for c in data.chunks(64 * 1024) {
                h.update(c);
            }
            black_box(h.finish())
        })
    });
    g.finish();
}

fn parsing(c: &mut Criterion) {
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    c.bench_function("parse digest", |b| b.iter(|| black_box(d).parse::<berth_types::Digest>()));
    c.bench_function("parse repo name", |b| {
        b.iter(|| black_box("research/hpc/images/pytorch-cuda").parse::<berth_types::RepoName>())
    });
    let path = format!("/v2/research/hpc/images/pytorch/manifests/{d}");
    c.bench_function("route manifest path", |b| b.iter(|| berth_oci::route::parse(black_box(&path))));
}

criterion_group!(benches, hashing, parsing);
criterion_main!(benches);
