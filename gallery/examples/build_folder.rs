//! Builds the gallery of a run folder: `cargo run -p lucid-gallery --example build_folder -- DIR [RUN_ID]`.
//!
//! `DIR` holds `{seed}/{layer}/{channel:04}.png` and sidecars; the gallery lands in `DIR/gallery/`.

use lucid_gallery::{FolderStore, GalleryOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: build_folder DIR [RUN_ID]")?;
    let run_id = args.next().unwrap_or_else(|| "run".to_owned());
    let mut store = FolderStore::new(&dir);
    let source = store.clone();
    let started = std::time::Instant::now();
    let summary = lucid_gallery::build(&source, &mut store, &GalleryOptions::recommended(run_id))?;
    println!("{summary:?} in {:.2?}", started.elapsed());
    println!("open {dir}/gallery/index.html");
    Ok(())
}
