//! Embeds an rpath to libtorch so `lucid-worker` finds it at run time without `LD_LIBRARY_PATH`.
//!
//! torch-sys locates libtorch through the `LIBTORCH` environment variable (set by `make`, from
//! `scripts/install-libtorch.sh`); the same folder's `lib/` goes into the binaries' run path. On a
//! machine with a different libtorch location, `LD_LIBRARY_PATH` still takes precedence.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
}
