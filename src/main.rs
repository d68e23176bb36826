fn main() -> std::process::ExitCode {
    jobpool::cli::main()
}
