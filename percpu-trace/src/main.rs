//! `percpu-trace` binary: everything lives in the library; see `cli`.
fn main() -> std::process::ExitCode {
    percpu_trace::cli::main()
}
