//! The log relay as a program of its own (see `roost_runtime::logs`), for
//! users of this crate without the `roost` binary, and for its tests.

fn main() -> std::process::ExitCode {
    roost_runtime::logs::relay_main(std::env::args_os().skip(1))
}
