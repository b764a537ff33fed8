//! The conv autotuner (`prior_ops::tune`): keys and cache text round-trip,
//! the disk cache is written atomically, read back and ignored with a
//! warning when corrupt, `off` does nothing, and a tuned choice is never
//! slower than the fixed default by more than noise.
//!
//! The tuner's table is process-wide, so the tests that change it hold one
//! lock (the test harness runs tests on parallel threads).

mod common;
use std::sync::Mutex;

use common::*;
use prior_gpu::Shape;
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue, Tile};
use prior_ops::tune::{self, ConvKey, DiskStore, NoStore, TuneConfig, TuneMode, TuneStore};

static TABLE: Mutex<()> = Mutex::new(());

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("prior-tune-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn keys_and_cache_text_round_trip() {
    let keys = [
        ConvKey::conv(ConvConfig::same(64, 64, 3, 1), Shape::new(1, 128, 96, 64)),
        ConvKey::conv(
            ConvConfig::new(3, 5, 5, 5).stride(2).pad(2).dilation(2),
            Shape::new(2, 13, 17, 3),
        ),
        ConvKey::transposed(
            ConvConfig::new(64, 32, 2, 2).stride(2),
            Shape::new(4, 8, 8, 64),
            (16, 16),
        ),
    ];
    for k in keys {
        assert_eq!(ConvKey::parse(&k.text()), Some(k), "{}", k.text());
    }
    assert_eq!(keys[0].ho, 128);
    assert_eq!(keys[0].wo, 96);
    // (13 + 4 − 9) / 2 + 1 and (17 + 4 − 9) / 2 + 1.
    assert_eq!((keys[1].ho, keys[1].wo), (5, 7));
    for bad in [
        "",
        "conv",
        "conv 64>64 k3x3 s1 p1 d1 in1x8x8",
        "conv 0>64 k3x3 s1 p1 d1 in1x8x8 out8x8",
    ] {
        assert_eq!(ConvKey::parse(bad), None, "{bad}");
    }
    let choices = keys
        .iter()
        .zip([
            ConvVariant::Fixed,
            ConvVariant::Tiled(Tile::T32x32),
            ConvVariant::Plain,
        ])
        .map(|(k, v)| (*k, v))
        .collect();
    let text = tune::cache_text("adapter A", &choices);
    let mut back = tune::parse_cache("adapter A", &text).unwrap();
    back.sort_by_key(|(k, _)| k.text());
    let mut want: Vec<_> = choices.into_iter().collect();
    want.sort_by_key(|(k, _)| k.text());
    assert_eq!(back, want);
    let other = tune::parse_cache("adapter B", &text).unwrap_err();
    assert!(other.contains("adapter A"), "{other}");
    let garbled = text.replace(" = ", " : ");
    let err = tune::parse_cache("adapter A", &garbled).unwrap_err();
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn modes_parse_and_off_does_nothing() {
    assert_eq!(TuneMode::parse("off"), Ok(TuneMode::Off));
    assert_eq!(TuneMode::parse(" Quick "), Ok(TuneMode::Quick));
    assert_eq!(TuneMode::parse("full"), Ok(TuneMode::Full));
    let e = TuneMode::parse("fast").unwrap_err();
    assert!(
        e.contains("PRIOR_TUNE=fast") && e.contains("off, quick or full"),
        "{e}"
    );
    let _g = TABLE.lock().unwrap();
    let gpu = gpu();
    let dir = temp_dir("off");
    let store = DiskStore { dir: dir.clone() };
    let key = ConvKey::conv(ConvConfig::same(8, 8, 3, 1), Shape::new(1, 9, 9, 8));
    let r = pollster::block_on(tune::tune(
        gpu,
        &[key],
        TuneConfig::new(TuneMode::Off),
        &store,
    ))
    .unwrap();
    assert!(r.decisions.is_empty() && r.warnings.is_empty());
    assert!(!dir.exists(), "off must not write a cache");
    assert_eq!(tune::chosen(gpu, &key), None);
}

#[test]
fn disk_cache_is_written_read_back_and_a_corrupt_one_ignored() {
    let _g = TABLE.lock().unwrap();
    let gpu = gpu();
    tune::clear(gpu);
    let dir = temp_dir("disk");
    let store = DiskStore { dir: dir.clone() };
    let id = tune::adapter_key(gpu);
    let key = ConvKey::conv(ConvConfig::same(16, 16, 3, 1), Shape::new(1, 12, 12, 16));
    let cfg = TuneConfig::new(TuneMode::Quick);
    let r = pollster::block_on(tune::tune(gpu, &[key], cfg, &store)).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let d = &r.decisions[0];
    assert!(!d.cached);
    assert_eq!(d.timings.len(), 3, "quick: fixed and two tiles");
    assert!(d
        .timings
        .iter()
        .all(|t| t.seconds > 0.0 && t.seconds.is_finite()));
    let text = std::fs::read_to_string(store.path(&id)).unwrap();
    assert!(
        text.contains(&format!("{} = {}", key.text(), d.chosen.name())),
        "{text}"
    );
    // No temporary file is left beside it.
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);

    // A later run reads the choice instead of timing.
    tune::clear(gpu);
    assert!(tune::load_store(gpu, &store).is_empty());
    assert_eq!(tune::chosen(gpu, &key), Some(d.chosen));
    let again = pollster::block_on(tune::tune(gpu, &[key], cfg, &store)).unwrap();
    assert!(again.decisions[0].cached && again.decisions[0].timings.is_empty());

    // A corrupt file: a warning naming it, no choice, no panic; the next
    // pass rewrites it.
    store.save(&id, "not a cache\n\u{0}\u{1}").unwrap();
    tune::clear(gpu);
    let w = tune::load_store(gpu, &store);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("ignoring the tuning cache") && w[0].contains("tune-"),
        "{}",
        w[0]
    );
    assert_eq!(tune::chosen(gpu, &key), None);
    let r = pollster::block_on(tune::tune(gpu, &[key], cfg, &store)).unwrap();
    assert!(!r.decisions[0].cached);
    assert!(tune::parse_cache(&id, &store.load(&id).unwrap()).is_ok());

    // Forward calls record the shapes they meet; tune_seen tunes them.
    tune::clear(gpu);
    let cfg8 = ConvConfig::same(8, 8, 3, 1);
    let conv = Conv2d::new(gpu, &rand_vec(cfg8.weights(), 1), cfg8);
    let s = Shape::new(1, 10, 10, 8);
    let x = gpu.upload(s, &rand_vec(s.numel(), 2));
    conv.forward(gpu, &x, Epilogue::default()).unwrap();
    assert_eq!(tune::seen(gpu), vec![ConvKey::conv(cfg8, s)]);
    let r = pollster::block_on(tune::tune_seen(gpu, cfg, &NoStore)).unwrap();
    assert_eq!(r.decisions.len(), 1);
    assert!(tune::seen(gpu).is_empty());
    tune::clear(gpu);
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Tuned (`Auto` after a `full` pass) against `Fixed`, interleaved (the
/// order alternating per round), medians of 15 rounds of a 3×3 64→64 conv
/// on 48×48 (≈ 170 MFLOP, ~30 ms on lavapipe). Margin: the median of `Auto`
/// may exceed `Fixed`'s by 30 %: when the tuner keeps Fixed both run the
/// same kernel and differ by noise only (measured here, same kernel: 10 %
/// apart with 9 rounds on 2 cores shared with 3 other builds), and a switch
/// needed a 3 % win at tuning time. A slower tiled pick (8× on lavapipe)
/// would fail it by far.
#[test]
fn a_tuned_choice_is_never_slower_than_the_fixed_default() {
    let _g = TABLE.lock().unwrap();
    let gpu = gpu();
    tune::clear(gpu);
    let cfg = ConvConfig::same(64, 64, 3, 1);
    let s = Shape::new(1, 48, 48, 64);
    let key = ConvKey::conv(cfg, s);
    let r = pollster::block_on(tune::tune(
        gpu,
        &[key],
        TuneConfig::new(TuneMode::Full),
        &NoStore,
    ))
    .unwrap();
    let d = &r.decisions[0];
    for t in &d.timings {
        println!("{}: {:.2} ms", t.variant.name(), t.seconds * 1e3);
    }
    println!("on {}: tuner chose {}", gpu.adapter.name, d.chosen.name());
    let conv = Conv2d::new(gpu, &rand_vec(cfg.weights(), 3), cfg);
    let x = gpu.upload(s, &rand_vec(s.numel(), 4));
    let time = |variant| {
        let t = std::time::Instant::now();
        let epi = Epilogue {
            variant,
            ..Default::default()
        };
        let y = conv.forward(gpu, &x, epi).unwrap();
        let n = prior_ops::reduce::dot(gpu, &y, &y).unwrap();
        pollster::block_on(gpu.read(&n)).unwrap();
        t.elapsed().as_secs_f64()
    };
    time(ConvVariant::Fixed);
    time(ConvVariant::Auto);
    let (mut fixed, mut tuned) = (Vec::new(), Vec::new());
    for round in 0..15 {
        if round % 2 == 0 {
            fixed.push(time(ConvVariant::Fixed));
            tuned.push(time(ConvVariant::Auto));
        } else {
            tuned.push(time(ConvVariant::Auto));
            fixed.push(time(ConvVariant::Fixed));
        }
    }
    let (f, t) = (median(fixed), median(tuned));
    println!(
        "median fixed {:.2} ms, tuned ({}) {:.2} ms",
        f * 1e3,
        d.chosen.name(),
        t * 1e3
    );
    tune::clear(gpu);
    assert!(
        t <= f * 1.3,
        "tuned {} median {:.2} ms vs fixed {:.2} ms on {}",
        d.chosen.name(),
        t * 1e3,
        f * 1e3,
        gpu.adapter.name
    );
}
