//! A dataflow operator in Rust, built for wasm32-wasi with Debian's rustc (no crates):
//! `value * scale + offset` for every record of the micro-batch on stdin.
//!
//!     rustc --edition 2021 --target wasm32-wasi -O -C strip=symbols -o scale.wasm scale.rs
//!
//! The WASI operator ABI (docs/dataflow.md, "Operators in any language"):
//! - stdin: one micro-batch, one record per line `<src> <seq> <t> <value>`;
//! - stdout: the output records, same form; keep `src`, `seq` and `t` as they came;
//! - argv: `[operator, *args]` (here `--scale A --offset B`); env: the task's `EDGERM_DF_*`;
//! - `/state`: a directory preopened for the instance, kept between batches;
//! - exit 0: the batch succeeded; non-zero (or a trap): the batch failed and is counted.
//! Malformed lines are skipped and noted on stderr; a bad argument exits 2 with a usage line.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::exit;

const USAGE: &str = "usage: scale [--scale A] [--offset B]";

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => match args.get(i + 1).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()) {
            Some(v) => v,
            None => {
                eprintln!("{}: {} needs a number\n{}", args[0], name, USAGE);
                exit(2);
            }
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for a in args.iter().skip(1).step_by(2) {
        if a != "--scale" && a != "--offset" {
            eprintln!("{}: unknown argument {}\n{}", args[0], a, USAGE);
            exit(2);
        }
    }
    let scale = arg(&args, "--scale", 1.0);
    let offset = arg(&args, "--offset", 0.0);
    let stdin = io::stdin();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(_) => break,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let value = match (fields.len(), fields.get(3).map(|v| v.parse::<f64>())) {
            (4, Some(Ok(v))) => v,
            _ => {
                eprintln!("{}: skipped a malformed record", args[0]);
                continue;
            }
        };
        // `{}` prints the shortest text that reads back as the same f64.
        writeln!(out, "{} {} {} {}", fields[0], fields[1], fields[2], value * scale + offset).unwrap_or_else(|_| exit(1));
    }
    out.flush().unwrap_or_else(|_| exit(1));
}
