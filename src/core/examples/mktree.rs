//! Writes a host-root tree for trying Passage without the hardware:
//!
//!   cargo run --example mktree -- tests/fixtures/machines/asus-tuf-b550m-plus-5800x.json /tmp/b550
//!   cargo run --release --example mktree -- --sriov 80x127 /tmp/sriov   (the benchmark host)
//!
//! then `passagectl --root /tmp/b550 list`.

use passage_core::synth::{sriov_farm, MachineSpec};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (spec, out) = match args.as_slice() {
        [flag, shape, out] if flag == "--sriov" => {
            let Some((p, v)) = shape
                .split_once('x')
                .and_then(|(p, v)| Some((p.parse().ok()?, v.parse().ok()?)))
            else {
                eprintln!("mktree: --sriov wants PFSxVFS, e.g. 80x127");
                return ExitCode::from(2);
            };
            (sriov_farm(p, v), out)
        }
        [file, out] => match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|s| MachineSpec::from_json(&s).map_err(|e| e.to_string()))
        {
            Ok(s) => (s, out),
            Err(e) => {
                eprintln!("mktree: {file}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: mktree MACHINE.json OUT | mktree --sriov PFSxVFS OUT");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = spec.write_tree(Path::new(out)) {
        eprintln!("mktree: {e}");
        return ExitCode::from(2);
    }
    println!("{} functions written to {out}", spec.devices.len());
    ExitCode::SUCCESS
}
