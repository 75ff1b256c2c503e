//! Scanner benchmarks: inventory + match of the Debian minbase image, and re-evaluation of
//! 1,000 stored inventories against a fresh import, end to end through the metadata store.
//! Prints times and the process's peak RSS.
//!
//!     cargo bench -p berth --bench scan
//!
//! Needs the advisory pack in `testdata/vulndb` (vendored with its licences) and the Debian layout the
//! tests build (`/var/cache/berth-test/debian-minbase`); a missing input skips its part.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_scan::inventory::LayerStack;
use berth_scan::{Database, OsvRecord, read_jsonl};
use criterion::Criterion;

fn pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vulndb/osv")
}

fn load_db() -> Option<Database> {
    let mut db = Database::new();
    for eco in std::fs::read_dir(pack()).ok()? {
        for f in std::fs::read_dir(eco.ok()?.path()).ok()? {
            let gz = flate2::read::GzDecoder::new(std::fs::File::open(f.ok()?.path()).ok()?);
            read_jsonl(std::io::BufReader::new(gz), |r: OsvRecord| db.add(&r)).ok()?;
        }
    }
    Some(db)
}

fn debian_layers() -> Option<Vec<Vec<u8>>> {
    let layout = Path::new("/var/cache/berth-test/debian-minbase");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).ok()?).ok()?;
    let md = index["manifests"][0]["digest"].as_str()?.trim_start_matches("sha256:").to_owned();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(md)).ok()?).ok()?;
    m["layers"]
        .as_array()?
        .iter()
        .map(|l| {
            std::fs::read(layout.join("blobs/sha256").join(l["digest"].as_str()?.trim_start_matches("sha256:"))).ok()
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let t = Instant::now();
    let Some(db) = load_db() else {
        eprintln!("skipped: no advisory pack at {}", pack().display());
        return;
    };
    println!("advisory index: {} advisories loaded in {:.2} s", db.len(), t.elapsed().as_secs_f64());
    let Some(layers) = debian_layers() else {
        eprintln!("skipped: no Debian layout (run the tests once to build it)");
        return;
    };
    let size: usize = layers.iter().map(Vec::len).sum();
    let inventory = || {
        let mut s = LayerStack::new();
        for (i, l) in layers.iter().enumerate() {
            s.apply(i, &l[..]).unwrap();
        }
        s.inventory()
    };
    let inv = inventory();
    let t = Instant::now();
    let report = berth_scan::report::scan(&inventory(), &db);
    println!(
        "debian minbase ({:.1} MiB of layers): {} packages, {} findings; inventory + match once in {:.3} s",
        size as f64 / 1048576.0,
        inv.packages.len(),
        report.findings.len(),
        t.elapsed().as_secs_f64()
    );
    c.bench_function("inventory + match, debian minbase", |b| b.iter(|| berth_scan::report::scan(&inventory(), &db)));
    c.bench_function("match only, debian minbase", |b| b.iter(|| berth_scan::report::scan(&inv, &db)));

    // End to end: 1,000 stored inventories re-evaluated by the scanner after an import.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use berth_meta::ScanStore;
        let dir = tempfile::tempdir().unwrap();
        let meta =
            std::sync::Arc::new(berth_meta::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap());
        let blobs = std::sync::Arc::new(berth_blob::FsBlobStore::open(dir.path().join("blobs")).await.unwrap());
        let registry = std::sync::Arc::new(berth_registry::Registry::new(blobs, meta.clone(), Default::default()));
        let text = serde_json::to_string(&serde_json::json!({"inventory": inv, "layers": []})).unwrap();
        for i in 0..1000 {
            let d = format!("sha256:{:064x}", i);
            meta.put_inventory(&d, &text, 0).await.unwrap();
            meta.put_report(&d, "bench/app", "{}", 0, 0).await.unwrap();
        }
        let t = Instant::now();
        let stats = berth_scanner::import(&meta, &pack()).await.unwrap();
        println!("import of the pack ({} records) into SQLite: {:.2} s", stats.records, t.elapsed().as_secs_f64());
        let scanner = berth_scanner::Scanner::new(registry, meta.clone());
        let t = Instant::now();
        scanner.database().await.unwrap();
        println!("advisory index loaded from the database: {:.2} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n = scanner.reevaluate().await.unwrap();
        println!("re-evaluation of {n} stored inventories (index already loaded): {:.2} s", t.elapsed().as_secs_f64());
    });
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
    c.final_summary();
}
