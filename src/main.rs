use std::process::ExitCode;

use argh::FromArgs;
use secure_channel_exporter::cli::{
    dotted_help, explain_parse_error, normalize_args, Args, CheckArgs, CheckConfig, CheckFormat,
    Config,
};
use secure_channel_exporter::{app, check, http, logging};

const NAME: &str = "secure-channel-exporter";

fn main() -> ExitCode {
    bound_allocator_retention();
    let typed: Vec<String> = std::env::args().skip(1).collect();
    if typed.first().map(String::as_str) == Some("check") {
        return run_check(&typed[1..]);
    }
    let args = match parse_flags::<Args>(&[NAME], &typed, &["check"]) {
        Ok(args) => args,
        Err(code) => return code,
    };
    if args.version {
        println!(
            "{NAME} {} (revision {}, rustc {})",
            env!("CARGO_PKG_VERSION"),
            env!("BUILD_REVISION"),
            env!("BUILD_RUSTC_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_args(args, |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level, config.log_format);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config, http::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        // One line, like a bad flag: the log's own format is for the
        // running exporter, and this one never ran.
        Err(e) => {
            eprintln!("{NAME}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Parses `typed` into `T`; on `--help` or an error, prints and returns
/// the exit code (0 for help, 2 for a bad command line).
fn parse_flags<T: FromArgs>(
    command: &[&str],
    typed: &[String],
    words: &[&str],
) -> Result<T, ExitCode> {
    let argv = normalize_args(typed.iter().cloned());
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    T::from_args(command, &strs).map_err(|early| {
        if early.status.is_ok() {
            print!("{}", dotted_help(&early.output));
            return ExitCode::SUCCESS;
        }
        let help = T::from_args(command, &["--help"])
            .err()
            .map(|e| dotted_help(&e.output))
            .unwrap_or_default();
        let name = command.join(" ");
        eprintln!(
            "{NAME}: {}",
            explain_parse_error(&early.output, typed, &help, words)
        );
        eprintln!("Run {name} --help for the flags.");
        ExitCode::from(2)
    })
}

/// `secure-channel-exporter check`: exit 0 when every document is fine,
/// 1 when one failed, 2 for bad flags.
fn run_check(typed: &[String]) -> ExitCode {
    let args = match parse_flags::<CheckArgs>(&[NAME, "check"], typed, &[]) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let config = match CheckConfig::from_args(args, |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{NAME} check: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{NAME} check: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(check::run(&config.pool, config.pool_timeout)) {
        Ok(report) => report,
        // A CA, certificate or key file that cannot be used: a flag's fault.
        Err(e) => {
            eprintln!("{NAME} check: {e}");
            return ExitCode::from(2);
        }
    };
    match config.format {
        CheckFormat::Text => print!("{}", check::text(&report)),
        CheckFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("{NAME} check: cannot write the report: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Raises the soft limit on open files to the hard limit, as Go programs
/// (node_exporter and friends) do at start: `--web.max-connections`
/// (1024 by default) plus the pool connections must fit under it, and the
/// usual soft limit is exactly 1024.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    tracing::debug!("could not raise the open-file limit");
                }
            }
        }
    }
}

/// glibc's malloc keeps up to eight arenas per core, one per thread that
/// allocates, and a large block freed in one is kept for reuse there: a
/// scrape that decodes a multi-MiB pool document on a different worker
/// thread each time left the peak resident memory ~8 MiB higher after each
/// of the first scrapes (issue 11 measured 51 MiB after three scrapes of a
/// status just under the body cap, 38 MiB after the first). Two arenas, and
/// blocks of 256 KiB and more mapped and unmapped on their own, make the
/// peak follow the largest document rather than the number of threads that
/// ever decoded one.
fn bound_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes glibc's allocator; called before any
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
