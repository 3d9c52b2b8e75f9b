//! The dataset examples on the pages: beside a channel's visualization its top-k and bottom-k
//! images by spatial mean and its top-k maxima as receptive-field crops; and a layer's page of
//! examples instead of visualizations.
//!
//! A crop is the prepared picture itself, scaled so the crop fills its box and shifted so the box
//! shows exactly `[top, left, bottom, right)`: no second image per example is stored, and the crop
//! is the pixels the network saw (the picture is the prepared square, at the probe side).

use std::fmt::Write as _;

use lucid_probe::Example;
use lucid_probe::output::{ChannelRecord, Peak};

use super::{Esc, Page, fmt_f64, plural, run_crumb, view_switch};
use crate::examples::{LayerExamples, ModelPictures};
use crate::{Layer, paths};

/// Side of an example on a channel page, in CSS pixels.
const EXAMPLE: u32 = 112;

/// Top examples per channel on a layer's examples page.
const ROW_EXAMPLES: usize = 6;

/// The "Dataset examples" section of channel `channel`'s page; nothing for a layer without them.
pub(crate) fn channel_examples(p: &mut Page, layer: &Layer, channel: u32) {
    let Some(examples) = &layer.examples else {
        return;
    };
    p.out.push_str("<h2>Dataset examples</h2>\n");
    let (record, pictures) = match (examples, examples.channel(channel)) {
        (_, Some(found)) => found,
        (LayerExamples::Unreadable(reason), _) => {
            w!(
                p.out,
                "<p class=\"bad\">examples unreadable: {}</p>\n",
                Esc(reason)
            );
            return;
        }
        (LayerExamples::Ok { .. }, None) => {
            p.out
                .push_str("<p class=\"warn\">the probe pass has no examples of this channel</p>\n");
            return;
        }
    };
    w!(
        p.out,
        "<h3>Highest mean activation</h3>\n<div class=\"ex\">"
    );
    for example in &record.top_mean {
        example_figure(p, pictures, example, None);
    }
    p.out.push_str("</div>\n<h3>Strongest single positions");
    let cropped = record.top_max.iter().any(|peak| peak.crop.is_some());
    p.out.push_str(if cropped {
        " (receptive-field crops)"
    } else {
        " (whole images: the network carries no geometry to crop by)"
    });
    p.out.push_str("</h3>\n<div class=\"ex\">");
    for peak in &record.top_max {
        example_figure(p, pictures, &peak.example, Some(peak));
    }
    p.out
        .push_str("</div>\n<h3>Lowest mean activation</h3>\n<div class=\"ex\">");
    for example in &record.bottom_mean {
        example_figure(p, pictures, example, None);
    }
    p.out.push_str("</div>\n");
}

/// One example: its picture (or its crop when `peak` has one) linked to the whole picture,
/// captioned with its score and name.
fn example_figure(p: &mut Page, pictures: &ModelPictures, example: &Example, peak: Option<&Peak>) {
    // the records were checked against the model's images when read
    let Some(picture) = pictures.pictures.get(example.image as usize) else {
        return;
    };
    let mut caption = fmt_f64(f64::from(example.score));
    if peak.is_some() {
        w!(caption, " at ({}, {})", example.y, example.x);
    }
    p.out.push_str("<figure>");
    match &picture.key {
        Some(key) => {
            let href = p.href(key);
            w!(
                p.out,
                "<a href=\"{href}\" title=\"{}\">",
                Esc(&picture.name)
            );
            match peak.and_then(|peak| peak.crop) {
                Some(crop) => crop_image(p, &href, crop, pictures.side, &picture.name),
                None => w!(
                    p.out,
                    "<img src=\"{href}\" width=\"{EXAMPLE}\" height=\"{EXAMPLE}\" loading=\"lazy\" alt=\"{}\">",
                    Esc(&picture.name)
                ),
            }
            p.out.push_str("</a>");
        }
        None => w!(
            p.out,
            "<div class=\"ph\" style=\"width:{EXAMPLE}px;height:{EXAMPLE}px\" title=\"{}\">picture not stored</div>",
            Esc(&picture.name)
        ),
    }
    w!(
        p.out,
        "<figcaption>{}<br><span class=\"muted\">{}</span></figcaption></figure>",
        Esc(&caption),
        Esc(&picture.name)
    );
}

/// The part `[top, left, bottom, right)` of the picture at `src` (a square of `side` pixels),
/// scaled so its longer side fills [`EXAMPLE`].
fn crop_image(p: &mut Page, src: &str, crop: [usize; 4], side: u32, name: &str) {
    let [top, left, bottom, right] = crop.map(|v| v as f64);
    let (height, width) = ((bottom - top).max(1.0), (right - left).max(1.0));
    let scale = f64::from(EXAMPLE) / height.max(width);
    w!(
        p.out,
        "<div class=\"crop\" style=\"width:{:.1}px;height:{:.1}px\"><img src=\"{src}\" \
         style=\"width:{:.1}px;height:{:.1}px;left:{:.1}px;top:{:.1}px\" loading=\"lazy\" \
         alt=\"{} rows {}-{} columns {}-{}\"></div>",
        width * scale,
        height * scale,
        f64::from(side) * scale,
        f64::from(side) * scale,
        0.0 - left * scale, // not -0.0 for a crop at the edge
        0.0 - top * scale,
        Esc(name),
        crop[0],
        crop[2],
        crop[1],
        crop[3]
    );
}

/// `gallery/{model}/{layer}/examples.html`: per channel its visualization's thumbnail and its top
/// examples, each row linked to the channel's page.
pub(crate) fn examples_page(key: &str, run_id: &str, layer: &Layer) -> String {
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    let mut p = Page::new(
        key,
        &format!("{model} / {name} / dataset examples · run {run_id}"),
        &[
            run_crumb(run_id),
            (paths::layer_page(model, name), format!("{model} / {name}")),
        ],
    );
    w!(
        p.out,
        "<h1>{} / {} · dataset examples</h1>\n",
        Esc(model),
        Esc(name)
    );
    view_switch(&mut p, layer, None);
    let Some(examples) = &layer.examples else {
        return p.finish();
    };
    if let LayerExamples::Unreadable(reason) = examples {
        w!(
            p.out,
            "<p class=\"bad\">examples unreadable: {}</p>\n",
            Esc(reason)
        );
        return p.finish();
    }
    w!(
        p.out,
        "<p class=\"muted\">{}: the visualization, then the {ROW_EXAMPLES} probe images with the highest mean activation</p>\n",
        plural(layer.channels.len(), "channel", "channels")
    );
    let thumb = layer.thumb;
    p.out.push_str("<style>");
    w!(p.out, ".t{{width:{thumb}px;height:{thumb}px}}");
    for n in 0..layer.sprites.len() {
        let url = super::css_string(&paths::relative(&p.key, &paths::sprite(model, name, n)));
        w!(p.out, ".s{n}{{background-image:url(\"{url}\")}}");
    }
    p.out.push_str("</style>\n");
    for c in &layer.channels {
        let href = p.href(&paths::channel_page(model, name, c.channel));
        let (x, y) = (c.tile.col * thumb, c.tile.row * thumb);
        w!(
            p.out,
            "<div class=\"exrow\"><a href=\"{href}\">{:04}</a><a href=\"{href}\" class=\"t s{}\" \
             style=\"background-position:-{x}px -{y}px\" aria-label=\"channel {:04}\"></a>",
            c.channel,
            c.tile.sprite,
            c.channel
        );
        match examples.channel(c.channel) {
            Some((record, pictures)) => row_pictures(&mut p, record, pictures, thumb),
            None => p
                .out
                .push_str("<span class=\"warn small\">no examples</span>"),
        }
        p.out.push_str("</div>\n");
    }
    p.finish()
}

/// A row's top examples at the thumbnail size, lazy-loaded (a layer has thousands).
fn row_pictures(p: &mut Page, record: &ChannelRecord, pictures: &ModelPictures, thumb: u32) {
    for example in record.top_mean.iter().take(ROW_EXAMPLES) {
        let Some(picture) = pictures.pictures.get(example.image as usize) else {
            continue;
        };
        let title = format!("{} · {}", fmt_f64(f64::from(example.score)), picture.name);
        match &picture.key {
            Some(key) => {
                let src = p.href(key);
                w!(
                    p.out,
                    "<img src=\"{src}\" width=\"{thumb}\" height=\"{thumb}\" loading=\"lazy\" title=\"{}\" alt=\"{}\">",
                    Esc(&title),
                    Esc(&picture.name)
                );
            }
            None => w!(
                p.out,
                "<span class=\"ph\" style=\"width:{thumb}px;height:{thumb}px\" title=\"{}\">?</span>",
                Esc(&title)
            ),
        }
    }
}
