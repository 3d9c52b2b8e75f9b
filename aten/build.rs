//! Compiles `src/shim.cpp` against the headers of the libtorch that torch-sys links.
//!
//! torch-sys publishes its library folder (`cargo:libtorch_lib`, read here as
//! `DEP_TCH_LIBTORCH_LIB`); the headers sit beside it in `../include`, both in the libtorch zip and in
//! the PyTorch wheel. The C++ ABI flag must match libtorch's: torch-sys takes it from
//! `LIBTORCH_CXX11_ABI` (default 1, what every libtorch 2.x build uses), and so does this script.
//! The crate's own test binaries get an rpath to that folder, as the worker's binaries do
//! (`worker/build.rs`), so they run without `LD_LIBRARY_PATH`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not publish its libtorch folder (DEP_TCH_LIBTORCH_LIB is unset)");
    };
    let lib = PathBuf::from(lib);
    let include = lib
        .parent()
        .map(|root| root.join("include"))
        .unwrap_or_default();
    if !include.join("ATen").is_dir() {
        panic!(
            "no libtorch headers at {} (beside torch-sys's library folder {})",
            include.display(),
            lib.display()
        );
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/shim.cpp")
        .compile("lucid_aten_shim");
}
