//! Where every gallery object lives (keys relative to the run root) and how pages link to each other.
//!
//! All links are computed by [`relative`] from the key of the page to the key of the target, so they are
//! relative by construction and work from `file://` as well as from a bucket path.

use lucid_proto::View;
use lucid_proto::keys::{
    Kind, MATCH_DIR, PROBE_DIR, PROBE_IMAGES_DIR, PROBE_INDEX_NAME, result_file,
};

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

/// `{model}/{layer}/{channel:04}.png`: the channel view's image, as the workers store it (pages
/// name images through their layer's lead view, [`crate::Layer::lead_image`]).
#[cfg(test)]
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

/// `gallery/{model}/{layer}/examples.html`: the layer's dataset examples instead of its
/// visualizations (beside the channel pages `{channel:04}.html` and the view pages `view-…`).
pub(crate) fn examples_page(model: &str, layer: &str) -> String {
    format!("{DIR}/{model}/{layer}/examples.html")
}

/// `gallery/match/index.html`: the cross-seed matching of every layer.
pub(crate) fn match_index() -> String {
    format!("{DIR}/{MATCH_DIR}/index.html")
}

/// `gallery/match/{layer}.html`: a layer's reference channels with their partners in every seed
/// (its first page).
pub(crate) fn match_page(layer: &str) -> String {
    format!("{DIR}/{MATCH_DIR}/{layer}.html")
}

/// Page `page` (1-based) of a layer's matching: the first is [`match_page`], the others
/// `gallery/match/{layer}/page-{page}.html` (in a folder of their own, so no layer's name can
/// collide with another layer's page).
pub(crate) fn match_page_n(layer: &str, page: usize) -> String {
    if page <= 1 {
        match_page(layer)
    } else {
        format!("{DIR}/{MATCH_DIR}/{layer}/page-{page}.html")
    }
}

/// `gallery/match/{name}.svg`: a plot of the matching pages (`depth`, `{layer}-consistency`, …).
pub(crate) fn match_plot(name: &str) -> String {
    format!("{DIR}/{MATCH_DIR}/{name}.svg")
}

/// `match/layers/`: where the coordinator stores each layer's matching.
pub(crate) fn match_layers_prefix() -> String {
    format!("{MATCH_DIR}/layers/")
}

/// `match/layers/{layer}.json`.
pub(crate) fn match_layer_json(layer: &str) -> String {
    format!("{MATCH_DIR}/layers/{layer}.json")
}

/// `match/layers/{layer}.csv`.
pub(crate) fn match_layer_csv(layer: &str) -> String {
    format!("{MATCH_DIR}/layers/{layer}.csv")
}

/// File name of a model's merged probe report in its probe folder.
pub(crate) const PROBE_REPORT: &str = "probe.json";

/// How a layer's examples file name ends (`conv1.examples.json`).
pub(crate) const EXAMPLES_SUFFIX: &str = ".examples.json";

/// `probe/images.json`: the probe set as the run listed it.
pub(crate) fn probe_index() -> String {
    format!("{PROBE_DIR}/{PROBE_INDEX_NAME}")
}

/// `probe/{model}/probe.json`.
pub(crate) fn probe_report(model: &str) -> String {
    format!("{PROBE_DIR}/{model}/{PROBE_REPORT}")
}

/// `probe/{model}/{layer}.examples.json`.
pub(crate) fn examples(model: &str, layer: &str) -> String {
    format!("{PROBE_DIR}/{model}/{layer}{EXAMPLES_SUFFIX}")
}

/// `probe/images/{file:06}.jpg`: file `file` of the index as the networks saw it.
pub(crate) fn probe_picture(file: u32) -> String {
    format!("{PROBE_DIR}/{PROBE_IMAGES_DIR}/{file:06}.jpg")
}

/// `{model}/{layer}/{channel:04}.json`: the channel view's sidecar.
#[cfg(test)]
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
        assert_eq!(
            relative(&page, &probe_picture(7)),
            "../../../probe/images/000007.jpg"
        );
        assert_eq!(relative(&examples_page("s1", "conv2"), &page), "0005.html");
        // the probe objects' keys are the ones the coordinator writes
        let run: lucid_proto::RunId = "r".parse().unwrap();
        let model: lucid_proto::ModelId = "s1".parse().unwrap();
        let layer: lucid_proto::LayerName = "conv2".parse().unwrap();
        let prefix = lucid_proto::KeyPrefix::default();
        let under_run = |key: String| key.strip_prefix("r/").unwrap().to_owned();
        use lucid_proto::keys::ProbeOutput;
        assert_eq!(under_run(prefix.probe_index_key(&run)), probe_index());
        assert_eq!(under_run(prefix.probe_image_key(&run, 7)), probe_picture(7));
        assert_eq!(
            under_run(prefix.probe_output_key(&run, &model, ProbeOutput::Report)),
            probe_report("s1")
        );
        assert_eq!(
            under_run(prefix.probe_output_key(&run, &model, ProbeOutput::Examples(&layer))),
            examples("s1", "conv2")
        );
        use lucid_proto::keys::MatchOutput;
        assert_eq!(
            under_run(prefix.match_key(&run, MatchOutput::Layer(&layer))),
            match_layer_json("conv2")
        );
        assert_eq!(
            under_run(prefix.match_key(&run, MatchOutput::LayerCsv(&layer))),
            match_layer_csv("conv2")
        );
    }
}
