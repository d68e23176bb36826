//! Pool benchmarks, printed as `name value unit` lines (`benches/compare.py`, group
//! `library`, runs them in turn with the same measurements of Python's
//! `multiprocessing.Pool` in `bench.py` and prints ratios).
//!
//! - `map_async`: 100,000 trivial items, automatic chunk size, 2 workers (items/s);
//! - `map_async_text`: the same with 100,000 short texts (`"item number {i}"`, their
//!   length; the texts are made before the clock starts, and dropped by the map);
//! - `apply_async`: 20,000 one-by-one `apply_async` calls, then every `get` (tasks/s);
//! - `start_shutdown`: build a 2-worker pool and `join` it (ms, median).
//!
//! Each figure is the median of several runs. `harness = false`: this binary is also
//! the pool's worker program.
//!
//! Profiling aids (environment): `POOL_BENCH_RUNS=N` repetitions; `POOL_BENCH_PHASES=1`
//! prints phase timings to stderr; `POOL_BENCH_MAP_ONLY=K` runs only the map K times
//! (`POOL_BENCH_CHUNK=C` with a fixed chunk size, `POOL_BENCH_EACH=1` prints every
//! time); `POOL_BENCH_START_ONLY=K` runs only
//! start + join K times; `POOL_BENCH_APPLY_ONLY=K` runs only the 20,000 one-by-one
//! `apply_async` calls K times.

use std::time::{Duration, Instant};

use jobpool::pool::{Pool, Registry, TaskError, worker};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut registry = Registry::new();
    registry.register("noop", |x: i64| Ok::<_, TaskError>(x + 1));
    registry.register("length", |s: String| Ok::<_, TaskError>(s.len() as i64));
    worker::run_if_worker(&registry);
    let runs: usize =
        std::env::var("POOL_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);

    if let Some(k) =
        std::env::var("POOL_BENCH_START_ONLY").ok().and_then(|s| s.parse::<usize>().ok())
    {
        // Profiling aid: only start + join, k times.
        for _ in 0..k {
            let t0 = Instant::now();
            let p = Pool::builder().workers(2).registry(registry.clone()).build().unwrap();
            let built = t0.elapsed();
            p.join();
            eprintln!("start {built:?} start+join {:?}", t0.elapsed());
        }
        return;
    }
    let pool = Pool::builder().workers(2).registry(registry.clone()).build().expect("pool starts");
    // warm-up
    let _ = pool.map::<_, i64>("noop", 0..10_000i64).unwrap();

    let n = 100_000i64;
    if let Some(k) = std::env::var("POOL_BENCH_MAP_ONLY").ok().and_then(|s| s.parse::<usize>().ok())
    {
        // Profiling aid: only the map measurement, k times (POOL_BENCH_CHUNK: chunk size).
        let chunk = std::env::var("POOL_BENCH_CHUNK").ok().and_then(|s| s.parse().ok());
        let pool = match chunk {
            Some(c) => Pool::builder().workers(2).chunk_size(c).registry(registry).build().unwrap(),
            None => pool,
        };
        let mut times = Vec::new();
        for _ in 0..k {
            let t0 = Instant::now();
            let v: Vec<i64> = pool.map_async("noop", 0..n).unwrap().get(None).unwrap();
            assert_eq!(v.len(), n as usize);
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if std::env::var_os("POOL_BENCH_EACH").is_some() {
            let each: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
            eprintln!("map ms each: {}", each.join(" "));
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!("map ms: min {:.2} median {:.2}", times[0], times[times.len() / 2]);
        return;
    }
    if let Some(k) =
        std::env::var("POOL_BENCH_APPLY_ONLY").ok().and_then(|s| s.parse::<usize>().ok())
    {
        // Profiling aid: only the one-by-one apply measurement, k times.
        let mut times = Vec::new();
        for _ in 0..k {
            let t0 = Instant::now();
            let rs: Vec<_> =
                (0..20_000i64).map(|i| pool.apply_async::<_, i64>("noop", i).unwrap()).collect();
            let sum: i64 = rs.iter().map(|r| r.get(None).unwrap()).sum();
            assert_eq!(sum, (1..=20_000i64).sum::<i64>());
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!("apply ms: min {:.2} median {:.2}", times[0], times[times.len() / 2]);
        return;
    }
    if std::env::var_os("POOL_BENCH_PHASES").is_some() {
        let tp = Pool::builder()
            .workers(2)
            .worker_kind(jobpool::pool::WorkerKind::Threads)
            .registry(registry.clone())
            .build()
            .unwrap();
        for _ in 0..runs {
            let t0 = Instant::now();
            let v: Vec<i64> = tp.map("noop", 0..n).unwrap();
            eprintln!("threads backend map: {:?} ({})", t0.elapsed(), v.len());
        }
        for (w, chunk) in [(1, 0), (1, 100_000), (2, 50_000)] {
            let mut b = Pool::builder()
                .workers(w)
                .worker_kind(jobpool::pool::WorkerKind::Threads)
                .registry(registry.clone());
            if chunk > 0 {
                b = b.chunk_size(chunk); // 0: automatic
            }
            let tp = b.build().unwrap();
            let t0 = Instant::now();
            let v: Vec<i64> = tp.map("noop", 0..n).unwrap();
            eprintln!("threads w={w} chunk={chunk}: {:?} ({})", t0.elapsed(), v.len());
        }
        for _ in 0..runs {
            let t0 = Instant::now();
            let r = pool.map_async::<_, i64>("noop", 0..n).unwrap();
            let t1 = t0.elapsed();
            r.wait(None);
            let t2 = t0.elapsed();
            let v = r.get(None).unwrap();
            let t3 = t0.elapsed();
            drop(r);
            let t4 = t0.elapsed();
            eprintln!("submit {t1:?} done {t2:?} get {t3:?} drop {t4:?} ({})", v.len());
        }
    }
    let mut rates = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let v: Vec<i64> = pool.map_async("noop", 0..n).unwrap().get(None).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(v.len(), n as usize);
        assert_eq!(v[99_999], 100_000);
        rates.push(n as f64 / dt);
    }
    println!("map_async {:.0} items/s", median(rates));

    // Items of 17-22 bytes (text): a map chunk is more than a busy worker's batch.
    let mut rates = Vec::new();
    for _ in 0..runs {
        let texts: Vec<String> = (0..n).map(|i| format!("item number {i}")).collect();
        let t0 = Instant::now();
        let v: Vec<i64> = pool.map_async("length", texts).unwrap().get(None).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(v[99_999], 17);
        rates.push(n as f64 / dt);
    }
    println!("map_async_text {:.0} items/s", median(rates));

    let n = 20_000i64;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let rs: Vec<_> = (0..n).map(|i| pool.apply_async::<_, i64>("noop", i).unwrap()).collect();
        let mut sum = 0i64;
        for r in &rs {
            sum += r.get(None).unwrap();
        }
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(sum, (1..=n).sum::<i64>());
        rates.push(n as f64 / dt);
    }
    println!("apply_async {:.0} tasks/s", median(rates));
    // Streaming run (what `jobpool run` uses): JSON arguments in, JSON values out.
    let n = 200_000u64;
    let mut rates = Vec::new();
    for _ in 0..runs.min(3) {
        let t0 = Instant::now();
        let items = (0..n).map(|i| jobpool::pool::Submission {
            id: i,
            func: "noop".into(),
            args: jobpool::pool::Payload::Json(i.to_string()),
        });
        let mut count = 0u64;
        for o in pool.run_stream(items).unwrap() {
            assert_eq!(o.status, jobpool::record::Status::Ok);
            count += 1;
        }
        assert_eq!(count, n);
        rates.push(n as f64 / t0.elapsed().as_secs_f64());
    }
    println!("run_stream {:.0} items/s", median(rates));
    drop(pool);

    let mut times = Vec::new();
    for _ in 0..(runs * 3) {
        let t0 = Instant::now();
        let p = Pool::builder().workers(2).registry(registry.clone()).build().unwrap();
        let built = t0.elapsed();
        p.join();
        if std::env::var_os("POOL_BENCH_PHASES").is_some() {
            eprintln!("start {built:?} start+join {:?}", t0.elapsed());
        }
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("start_shutdown {:.2} ms", median(times));
}
