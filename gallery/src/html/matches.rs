//! The cross-seed matching on the pages (issue 16): an index with the curve over depth and every
//! layer's numbers, and per layer one row per reference channel with its matched channel's
//! visualization (and top dataset example) in every seed, best matched first, each labelled with
//! its correlation, then the shelf of channels unique to one seed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lucid_match::LayerMatch;

use super::{Esc, Page, plural, run_crumb};
use crate::matches::{MatchLine, ROWS_PER_PAGE};
use crate::{Channel, Layer, paths};

/// `gallery/match/index.html`: the curve over depth and a line per matched layer (or why it could
/// not be read).
pub(crate) fn match_index_page(
    key: &str,
    run_id: &str,
    layers: &[(String, Result<MatchLine, String>)],
) -> String {
    let mut p = Page::new(
        key,
        &format!("channels matched across seeds · run {run_id}"),
        &[run_crumb(run_id)],
    );
    p.out.push_str("<h1>Channels matched across seeds</h1>\n");
    p.out.push_str(
        "<p class=\"muted\">each channel of the reference seed with its partner in every other seed \
         (one-to-one assignment maximising the total correlation over the probe images); \
         docs/matching.md</p>\n",
    );
    let curve = p.href(&paths::match_plot("depth"));
    w!(
        p.out,
        "<p><img src=\"{curve}\" width=\"640\" height=\"320\" alt=\"mean matched correlation over depth\"></p>\n"
    );
    p.out.push_str(
        "<table><tr><th>layer</th><th>mean matched r</th><th>universal</th><th>unique</th><th>images</th></tr>",
    );
    for (layer, summary) in layers {
        let href = p.href(&paths::match_page(layer));
        match summary {
            Ok(line) => w!(
                p.out,
                "<tr><td><a href=\"{href}\">{}</a></td><td class=\"n\">{:.3}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                Esc(layer),
                line.mean,
                line.universal,
                line.unique,
                line.images
            ),
            Err(reason) => w!(
                p.out,
                "<tr><td>{}</td><td colspan=\"4\" class=\"bad\">unreadable: {}</td></tr>",
                Esc(layer),
                Esc(reason)
            ),
        }
    }
    p.out.push_str("</table>\n");
    p.finish()
}

/// Page `page` of `pages` of a layer's matching ([`paths::match_page_n`]): the header and plots,
/// that page's [`ROWS_PER_PAGE`] reference rows, links to the other pages, and on the last page the
/// shelf of unique channels.
pub(crate) fn match_layer_page(
    key: &str,
    run_id: &str,
    m: &LayerMatch,
    built: &[Layer],
    (page, pages): (usize, usize),
) -> String {
    let layer = m.layer.as_str();
    let mut p = Page::new(
        key,
        &format!("{layer} matched across seeds · run {run_id}"),
        &[
            run_crumb(run_id),
            (paths::match_index(), "channels matched across seeds".into()),
        ],
    );
    let per_model: Vec<Option<&Layer>> = m
        .models
        .iter()
        .map(|model| built.iter().find(|l| &l.model == model && l.layer == layer))
        .collect();
    header(&mut p, m);
    sprite_styles(&mut p, m, &per_model);
    let lookup: Vec<BTreeMap<u32, &Channel>> = per_model
        .iter()
        .map(|l| {
            l.iter()
                .flat_map(|l| &l.channels)
                .map(|c| (c.channel, c))
                .collect()
        })
        .collect();
    p.out
        .push_str("<h2>Reference channels and their partners</h2>\n");
    page_links(&mut p, layer, (page, pages), m.reference_rows.len());
    p.out
        .push_str("<table class=\"match\"><tr><th>reference</th>");
    for model in &m.models {
        w!(p.out, "<th>{}</th>", Esc(model));
    }
    p.out.push_str("</tr>\n");
    let shown = m.reference_rows.iter().skip((page - 1) * ROWS_PER_PAGE);
    for row in shown.take(ROWS_PER_PAGE) {
        w!(
            p.out,
            "<tr><td>{:04}{}<br><span class=\"small muted\">mean r {:.3}</span></td>",
            row.channel,
            if row.universal {
                " <b title=\"its partners agree in every pair of seeds\">universal</b>"
            } else {
                ""
            },
            row.mean_correlation
        );
        for (s, partner) in row.partners.iter().enumerate() {
            p.out.push_str("<td>");
            match partner {
                Some(partner) => cell(
                    &mut p,
                    (s, &m.models[s]),
                    layer,
                    (&lookup[s], per_model[s]),
                    partner.channel as u32,
                    partner.correlation,
                ),
                None => p.out.push_str("<span class=\"muted\">unmatched</span>"),
            }
            p.out.push_str("</td>");
        }
        p.out.push_str("</tr>\n");
    }
    p.out.push_str("</table>\n");
    if page == pages {
        unique_shelf(&mut p, m, &lookup, &per_model);
    }
    p.finish()
}

/// "rows 257–512 of 4096 · page 2 of 16: 1 2 … 16", nothing for a layer of one page.
fn page_links(p: &mut Page, layer: &str, (page, pages): (usize, usize), rows: usize) {
    if pages <= 1 {
        return;
    }
    let first = (page - 1) * ROWS_PER_PAGE + 1;
    let last = (page * ROWS_PER_PAGE).min(rows);
    w!(
        p.out,
        "<p class=\"pn\">rows {first}–{last} of {rows} · page <b>{page}</b> of {pages}:"
    );
    for n in 1..=pages {
        if n == page {
            w!(p.out, " <b>{n}</b>");
        } else {
            let href = p.href(&paths::match_page_n(layer, n));
            w!(p.out, " <a href=\"{href}\">{n}</a>");
        }
    }
    p.out.push_str("</p>\n");
}

fn header(p: &mut Page, m: &LayerMatch) {
    let universal = m.reference_rows.iter().filter(|r| r.universal).count();
    w!(
        p.out,
        "<h1>{} matched across seeds</h1>\n<p class=\"muted\">{} · reference {} · mean matched r {:.3} · \
         {} · {} (best r below {}) · over {} probe images",
        Esc(&m.layer),
        plural(m.models.len(), "seed", "seeds"),
        Esc(&m.reference),
        m.mean_matched_correlation,
        plural(universal, "universal channel", "universal channels"),
        plural(m.unique.len(), "unique channel", "unique channels"),
        m.options.unique_below,
        m.images
    );
    let csv = p.href(&paths::match_layer_csv(&m.layer));
    let json = p.href(&paths::match_layer_json(&m.layer));
    w!(
        p.out,
        " · <a href=\"{csv}\">csv</a> · <a href=\"{json}\">json</a></p>\n"
    );
    let heat = p.href(&paths::match_plot(&format!("{}-consistency", m.layer)));
    let hist = p.href(&paths::match_plot(&format!("{}-histogram", m.layer)));
    w!(
        p.out,
        "<div class=\"views\"><img src=\"{heat}\" width=\"420\" height=\"380\" alt=\"consistency heatmap\">\
         <img src=\"{hist}\" width=\"640\" height=\"320\" alt=\"histogram of best-match correlations\"></div>\n"
    );
}

/// One CSS class per model and sprite, as the comparison pages do.
fn sprite_styles(p: &mut Page, m: &LayerMatch, per_model: &[Option<&Layer>]) {
    p.out.push_str("<style>");
    for (s, layer) in per_model.iter().enumerate() {
        let Some(layer) = layer else { continue };
        w!(p.out, ".m{s}{{width:{0}px;height:{0}px}}", layer.thumb);
        for n in 0..layer.sprites.len() {
            let url = super::css_string(&paths::relative(
                &p.key,
                &paths::sprite(&m.models[s], &m.layer, n),
            ));
            w!(p.out, ".p{s}-{n}{{background-image:url(\"{url}\")}}");
        }
    }
    p.out.push_str(
        ".match td{white-space:nowrap}.match img{vertical-align:top;margin-left:2px}</style>\n",
    );
}

/// A matched channel: its tile and top example, linked to its channel page, with its correlation.
fn cell(
    p: &mut Page,
    (s, model): (usize, &str),
    layer: &str,
    (channels, built): (&BTreeMap<u32, &Channel>, Option<&Layer>),
    channel: u32,
    correlation: f32,
) {
    let href = p.href(&paths::channel_page(model, layer, channel));
    let rendered = channels.get(&channel).zip(built);
    let picture = built.and_then(|l| l.top_pictures.get(&channel).map(|pic| (l.thumb, pic)));
    match rendered {
        Some((c, l)) => {
            let (x, y) = (c.tile.col * l.thumb, c.tile.row * l.thumb);
            w!(
                p.out,
                "<a href=\"{href}\"><span class=\"t m{s} p{s}-{}\" style=\"background-position:-{x}px -{y}px\"></span>",
                c.tile.sprite
            );
        }
        None => p
            .out
            .push_str("<span class=\"small muted\">not rendered</span>"),
    }
    if let Some((thumb, (key, name))) = picture {
        let src = p.href(key);
        w!(
            p.out,
            "<img src=\"{src}\" width=\"{thumb}\" height=\"{thumb}\" loading=\"lazy\" title=\"{0}\" alt=\"{0}\">",
            Esc(name)
        );
    }
    if rendered.is_some() {
        p.out.push_str("</a>");
    }
    w!(
        p.out,
        "<br><span class=\"small\">{channel:04} · r {correlation:.2}</span>"
    );
}

fn unique_shelf(
    p: &mut Page,
    m: &LayerMatch,
    lookup: &[BTreeMap<u32, &Channel>],
    per_model: &[Option<&Layer>],
) {
    w!(
        p.out,
        "<h2>Unique channels</h2>\n<p class=\"muted\">no channel of any other seed correlates with these above r = {}</p>\n<div class=\"cards\">",
        m.options.unique_below
    );
    for u in &m.unique {
        p.out.push_str("<div class=\"card\">");
        cell(
            p,
            (u.seed, &m.models[u.seed]),
            &m.layer,
            (&lookup[u.seed], per_model[u.seed]),
            u.channel as u32,
            u.best_correlation,
        );
        w!(p.out, "<b>{}</b></div>", Esc(&m.models[u.seed]));
    }
    p.out.push_str("</div>\n");
}
