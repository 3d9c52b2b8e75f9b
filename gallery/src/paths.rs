//! Where every gallery object lives (keys relative to the run root) and how pages link to each other.
//!
//! All links are computed by [`relative`] from the key of the page to the key of the target, so they are
//! relative by construction and work from `file://` as well as from a bucket path.

use lucid_proto::View;
use lucid_proto::keys::{Kind, result_file};

/// The gallery's folder under the run root.
pub(crate) const DIR: &str = lucid_proto::keys::GALLERY_DIR;

/// `gallery/index.html`.
pub(crate) fn index() -> String {
    format!("{DIR}/index.html")
}

/// `gallery/{model}/{layer}.html`: the contact sheet.
pub(crate) fn layer_page(model: &str, layer: &str) -> String {
    format!("{DIR}/{model}/{layer}.html")
}

/// `gallery/{model}/{layer}/view-{slug}.html`: every channel of a layer in another view (beside
/// the channel pages `{channel:04}.html`, which never start with `view-`).
pub(crate) fn view_page(model: &str, layer: &str, view: View) -> String {
    let slug = view.slug().unwrap_or_else(|| "channel".into());
    format!("{DIR}/{model}/{layer}/view-{slug}.html")
}

/// `gallery/{model}/{layer}-{n}.png`: sprite `n` of a contact sheet.
pub(crate) fn sprite(model: &str, layer: &str, n: usize) -> String {
    format!("{DIR}/{model}/{layer}-{n}.png")
}

/// `gallery/{model}/{layer}-preview.png`: the index's preview of a layer.
pub(crate) fn preview(model: &str, layer: &str) -> String {
    format!("{DIR}/{model}/{layer}-preview.png")
}

/// `gallery/{model}/{layer}/{channel:04}.html`.
pub(crate) fn channel_page(model: &str, layer: &str, channel: u32) -> String {
    format!("{DIR}/{model}/{layer}/{channel:04}.html")
}

/// `gallery/compare/{layer}.html`.
pub(crate) fn compare_layer(layer: &str) -> String {
    format!("{DIR}/compare/{layer}.html")
}

/// `gallery/compare/{layer}/{channel:04}.html`.
pub(crate) fn compare_channel(layer: &str, channel: u32) -> String {
    format!("{DIR}/compare/{layer}/{channel:04}.html")
}

/// `{model}/{layer}/{channel:04}.png`: the rendered image, as the workers store it.
pub(crate) fn image(model: &str, layer: &str, channel: u32) -> String {
    format!("{model}/{layer}/{channel:04}.png")
}

/// `{model}/{layer}/{channel:04}.{view}[.{copy}].png`: an image of another view of the channel.
pub(crate) fn view_image(model: &str, layer: &str, channel: u32, view: View, copy: u32) -> String {
    format!(
        "{model}/{layer}/{}",
        result_file(channel, view, Kind::Png, copy)
    )
}

/// `{model}/{layer}/{channel:04}.{view}.json`: the sidecar of another view of the channel.
pub(crate) fn view_sidecar(model: &str, layer: &str, channel: u32, view: View) -> String {
    format!(
        "{model}/{layer}/{}",
        result_file(channel, view, Kind::Sidecar, 0)
    )
}

/// `{model}/{layer}/{channel:04}.json`: the result sidecar.
pub(crate) fn sidecar(model: &str, layer: &str, channel: u32) -> String {
    format!("{model}/{layer}/{channel:04}.json")
}

/// The relative URL from the page at key `from` to the object at key `to` (both relative to the run root).
pub(crate) fn relative(from: &str, to: &str) -> String {
    let from_dirs: Vec<&str> = from.split('/').collect();
    let from_dirs = &from_dirs[..from_dirs.len() - 1];
    let to_parts: Vec<&str> = to.split('/').collect();
    let (to_dirs, to_file) = to_parts.split_at(to_parts.len() - 1);
    let common = from_dirs
        .iter()
        .zip(to_dirs)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = "../".repeat(from_dirs.len() - common);
    for dir in &to_dirs[common..] {
        out.push_str(dir);
        out.push('/');
    }
    out.push_str(to_file[0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        let page = channel_page("s1", "conv2", 5);
        assert_eq!(
            relative(&page, &image("s1", "conv2", 5)),
            "../../../s1/conv2/0005.png"
        );
        assert_eq!(
            relative(&page, &channel_page("s1", "conv2", 6)),
            "0006.html"
        );
        assert_eq!(relative(&page, &layer_page("s1", "conv2")), "../conv2.html");
        assert_eq!(relative(&page, &index()), "../../index.html");
        assert_eq!(
            relative(&page, &compare_channel("conv2", 5)),
            "../../compare/conv2/0005.html"
        );
        assert_eq!(relative(&index(), &layer_page("s1", "c")), "s1/c.html");
        assert_eq!(
            relative(&layer_page("s1", "c"), &sprite("s1", "c", 2)),
            "c-2.png"
        );
        assert_eq!(
            relative(&compare_layer("c"), &sprite("s2", "c", 0)),
            "../s2/c-0.png"
        );
    }
}
