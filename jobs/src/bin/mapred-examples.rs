//! `mapred-examples`: the example jobs (`jobs` to list them, `submit NAME ...` to run one).

fn main() -> std::process::ExitCode {
    mapred::runtime::main(jobs::registry())
}
