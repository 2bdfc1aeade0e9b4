use clap::Parser;

fn main() {
    let cli = nbbuild::cli::Cli::parse();
    let code = match nbbuild::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
