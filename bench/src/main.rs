//! ramjet-bench binary: parse, run, report. See the library docs for what is measured.

use clap::Parser;
use ramjet_bench::args::{Cli, Command};
use ramjet_bench::runner::{run, write_outputs, Mode};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAMJET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (mode, args) = match cli.command {
        Command::Produce(a) => (Mode::Produce, a),
        Command::Consume(a) => (Mode::Consume, a),
        Command::E2e(a) => (Mode::E2e, a),
        Command::Pingpong(a) => (Mode::Pingpong, a),
        Command::Pop(a) => (Mode::Pop, a),
    };
    let out = match run(mode, &args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ramjet-bench: {e}");
            std::process::exit(1);
        }
    };
    if let Some((r, _)) = &out.produce_side {
        print!("{}", r.render());
    }
    print!("{}", out.report.render());
    if let Some(d) = out.drained_after_s {
        println!(
            "backlog read to its end {d:.3} s into the measured window: duration and rates are over that time"
        );
    }
    if let Some(l) = &out.send_lag {
        println!("{}", ramjet_bench::stats::lag_line(l));
    }
    if let Err(e) = write_outputs(&args, &out) {
        eprintln!("ramjet-bench: {e}");
        std::process::exit(1);
    }
}
