//! Where `passagectl list` spends its time, phase by phase, on a host root (and the app's
//! two steps, the sketch and the rest; and what a copy of the whole host costs, which the
//! helper's claims no longer pay on their way to the first write):
//! `cargo run --release -p passage-core --example phases -- ROOT [RUNS]`
//! (used for docs/PERFORMANCE.md; not a test).
use passage_core::host::HostRoot;
use passage_core::{report, scan};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args.next().ok_or("usage: phases ROOT [RUNS]")?;
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let root = HostRoot::open(root)?;
    for _ in 0..runs {
        let t = Instant::now();
        let host = scan::scan(&root)?;
        let t_scan = t.elapsed();
        let copy = host.clone();
        let t_copy = t.elapsed();
        drop(copy);
        let t_copy_drop = t.elapsed();
        let t = t + (t_copy_drop - t_scan);
        // What `list --json` does after the scan: verdicts made and written a window at a time.
        let mut json = Vec::new();
        report::write_list_json(&host, &mut json)?;
        let t_json = t.elapsed();
        let text = report::list_text(&host);
        let t_text = t.elapsed();
        // What the app does after the scan: the outline it lists at once; then, for
        // comparison, every verdict alone and every card (which makes its verdict again).
        let outline = passage_core::view::outline(&host);
        let t_outline = t.elapsed();
        let verdicts = passage_core::explain::groups(&host);
        let t_verdicts = t.elapsed();
        let plan = passage_core::plan::Plan::default();
        let cards = passage_core::view::cards(&host, &plan, &Default::default());
        let t_cards = t.elapsed();
        drop((host, outline, verdicts, cards));
        let t_drop = t.elapsed();
        // The app's two steps: the sketch it lists from, then the rest of the facts.
        let t = Instant::now();
        let s = passage_core::sketch::sketch(&root)?;
        let t_sketch = t.elapsed();
        let whole = s.finish_here(&root)?.host;
        let t_rest = t.elapsed();
        drop(whole);
        eprintln!(
            "scan {:>6.1} ms  copy {:>4.1} (drop {:>4.1})  verdicts+json {:>6.1} ({} B)  text {:>6.1} ({} B)  outline {:>5.1}  verdicts {:>6.1}  cards {:>6.1}  drop {:>5.1}  sketch {:>6.1}  rest {:>6.1}",
            ms(t_scan),
            ms(t_copy - t_scan),
            ms(t_copy_drop - t_copy),
            ms(t_json - t_scan),
            json.len(),
            ms(t_text - t_json),
            text.len(),
            ms(t_outline - t_text),
            ms(t_verdicts - t_outline),
            ms(t_cards - t_verdicts),
            ms(t_drop - t_cards),
            ms(t_sketch),
            ms(t_rest - t_sketch)
        );
    }
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
