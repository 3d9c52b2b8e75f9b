//! The pages. Every piece of text goes through [`Esc`]; every link through [`Page::href`], which makes it
//! relative to the page's own key.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write as _};

use serde_json::Value;

use crate::inventory::{Inventory, ViewObjects};
use crate::{Channel, ImageState, Layer, SidecarState, paths};
use lucid_proto::View;

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

// after `w!`, which they use
mod examples;
mod matches;

pub(crate) use examples::examples_page;
pub(crate) use matches::{match_index_page, match_layer_page};

/// Displays a string with `& < > " '` escaped, for text and attribute values alike.
pub(crate) struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

const CSS: &str = "\
:root{color-scheme:dark}\
body{margin:0;padding:12px 24px 32px;background:#111;color:#ddd;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
a{color:#8cf;text-decoration:none}a:hover{text-decoration:underline}\
h1{font-size:20px;margin:6px 0 10px;font-weight:600}h2{font-size:16px;margin:22px 0 8px;font-weight:600}\
nav{color:#888;margin:2px 0}nav a{margin-right:2px}.pn{display:flex;gap:16px;margin:6px 0 10px}\
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #2c2c2c;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#1a1a1a;font-weight:600}td table{margin:0}.n{text-align:right;font-variant-numeric:tabular-nums}\
.muted{color:#888}.warn{color:#fc6}.bad{color:#f77}.small{font-size:12px}\
.sheet{position:relative;margin:8px 0 14px;max-width:100%}.sheet img{display:block;width:100%;height:auto;background:#000}\
.grid{position:absolute;inset:0;display:grid}.grid a{display:block}\
.grid a:hover,.grid a:focus{outline:2px solid #fc0;outline-offset:-2px}\
.grid a.missing{outline:1px dashed #99a;outline-offset:-3px}.grid a.unreadable{outline:1px dashed #f66;outline-offset:-3px}\
.grid a.nometa{box-shadow:inset 0 0 0 2px #fc6}\
.channel{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}\
.views{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.views a{display:flex;gap:2px}\
.channel img,.models img,.views img{display:block;height:auto;max-width:100%;background:#000}\
.ph{display:flex;align-items:center;justify-content:center;background:#222;color:#f77;border:1px dashed #555}\
.models{display:flex;flex-wrap:wrap;gap:14px}.models figure{margin:0}figcaption{font-size:12px;color:#aaa;margin-top:4px}\
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{display:block;background:#181818;padding:4px;border-radius:3px}\
.card:hover{background:#262626;text-decoration:none}.card b{display:block;font-size:11px;color:#aaa;font-weight:400}\
.t{display:inline-block;vertical-align:top;background-repeat:no-repeat;margin-right:2px}.t.none{background:#30343f}\
.preview{display:block;margin:2px 0 4px}figure{margin:0}\
.ex{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}.ex figure{max-width:118px}.ex figcaption{overflow-wrap:anywhere}\
.ex img{display:block;background:#000}.crop{position:relative;overflow:hidden;background:#000}.crop img{position:absolute;max-width:none}\
.exrow{display:flex;flex-wrap:wrap;gap:3px;align-items:center;margin:3px 0}.exrow>a:first-child{width:64px;font-size:12px}\
";

/// A page under construction at `key`.
struct Page {
    key: String,
    out: String,
}

impl Page {
    /// Starts a page: head with inline CSS, then breadcrumbs of `(target key, label)`.
    fn new(key: &str, title: &str, crumbs: &[(String, String)]) -> Self {
        let mut page = Self {
            key: key.to_owned(),
            out: String::with_capacity(16 * 1024),
        };
        w!(
            page.out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <link rel=\"icon\" href=\"data:,\"><title>{}</title><style>{CSS}</style></head>\n<body>\n",
            Esc(title)
        );
        if !crumbs.is_empty() {
            page.out.push_str("<nav>");
            for (i, (target, label)) in crumbs.iter().enumerate() {
                if i > 0 {
                    page.out.push_str(" › ");
                }
                let href = page.href(target);
                w!(page.out, "<a href=\"{href}\">{}</a>", Esc(label));
            }
            page.out.push_str("</nav>\n");
        }
        page
    }

    /// The link from this page to `target` (a key relative to the run root), escaped for an attribute.
    fn href(&self, target: &str) -> String {
        Esc(&paths::relative(&self.key, target)).to_string()
    }

    fn finish(mut self) -> String {
        self.out.push_str("</body></html>\n");
        self.out
    }
}

/// Escapes a string for a double-quoted CSS string inside a `<style>` element, where HTML entities are
/// not decoded: everything outside `[A-Za-z0-9._/-]` becomes a CSS hex escape.
fn css_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-') {
            out.push(c);
        } else {
            w!(out, "\\{:x} ", u32::from(c));
        }
    }
    out
}

fn run_crumb(run_id: &str) -> (String, String) {
    (paths::index(), format!("run {run_id}"))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A short line of a layer's problems, empty if none.
fn problem_line(layer: &Layer) -> String {
    let [mi, ui, ms, us] = layer.problems();
    let mut parts = Vec::new();
    for (n, what) in [
        (mi, "image missing"),
        (ui, "image unreadable"),
        (ms, "sidecar missing"),
        (us, "sidecar unreadable"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(" · ")
}

fn channel_status(c: &Channel) -> Vec<String> {
    let mut out = Vec::new();
    match &c.image {
        ImageState::Ok { .. } => {}
        ImageState::Missing => out.push("image missing".to_owned()),
        ImageState::Unreadable(e) => out.push(format!("image unreadable: {e}")),
    }
    match &c.sidecar {
        SidecarState::Ok(_) => {}
        SidecarState::Missing => out.push("sidecar missing".to_owned()),
        SidecarState::Unreadable(e) => out.push(format!("sidecar unreadable: {e}")),
    }
    out
}

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1e-3 && v.abs() < 1e6 {
        format!("{v:.4}")
    } else {
        format!("{v:.4e}")
    }
}

fn fmt_objective(c: &Channel) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), fmt_f64);
    format!("{} → {}", f(c.objective_start), f(c.objective_end))
}

/// `gallery/index.html`: models × layers.
pub(crate) fn index_page(
    key: &str,
    run_id: &str,
    inv: &Inventory,
    built: &[Layer],
    matched: &[String],
) -> String {
    let mut p = Page::new(key, &format!("lucid gallery · run {run_id}"), &[]);
    let by_key: BTreeMap<(&str, &str), &Layer> = built
        .iter()
        .map(|l| ((l.model.as_str(), l.layer.as_str()), l))
        .collect();
    let channels: usize = built.iter().map(|l| l.channels.len()).sum();
    w!(
        p.out,
        "<h1>Run {}</h1>\n<p class=\"muted\">{} · {} · {}",
        Esc(run_id),
        plural(inv.models.len(), "model", "models"),
        plural(inv.layer_names.len(), "layer", "layers"),
        plural(channels, "channel", "channels")
    );
    let problems: usize = built
        .iter()
        .map(|l| l.problems().iter().sum::<usize>())
        .sum();
    if problems > 0 {
        w!(
            p.out,
            " · <span class=\"warn\">{}</span>",
            plural(problems, "problem", "problems")
        );
    }
    p.out.push_str("</p>\n");
    if !matched.is_empty() {
        let href = p.href(&paths::match_index());
        w!(
            p.out,
            "<p><a href=\"{href}\">channels matched across seeds</a>: which features recur in every seed</p>\n"
        );
    }
    if inv.models.is_empty() {
        p.out.push_str("<p>No rendered channels yet.</p>\n");
        return p.finish();
    }
    p.out.push_str("<table><tr><th>model</th>");
    for layer in &inv.layer_names {
        // a run matched across seeds shows partners, not channel k of every model
        let (target, label) = if matched.contains(layer) {
            (paths::match_page(layer), "matched across seeds")
        } else {
            (paths::compare_layer(layer), "compare models")
        };
        let href = p.href(&target);
        w!(
            p.out,
            "<th>{}<br><a class=\"small\" href=\"{href}\">{label}</a></th>",
            Esc(layer)
        );
    }
    p.out.push_str("</tr>\n");
    for (model, _) in &inv.models {
        w!(p.out, "<tr><th>{}</th>", Esc(model));
        for layer_name in &inv.layer_names {
            let Some(layer) = by_key.get(&(model.as_str(), layer_name.as_str())) else {
                p.out.push_str("<td class=\"muted\">—</td>");
                continue;
            };
            let href = p.href(&paths::layer_page(model, layer_name));
            let src = p.href(&paths::preview(model, layer_name));
            let (cols, rows) = crate::preview_layout(layer.channels.len());
            // shown at half size: a preview, not a contact sheet
            let (w, h) = (
                (cols * layer.thumb).div_ceil(2),
                (rows * layer.thumb).div_ceil(2),
            );
            w!(
                p.out,
                "<td><a href=\"{href}\"><img class=\"preview\" src=\"{src}\" width=\"{w}\" height=\"{h}\" \
                loading=\"lazy\" alt=\"first channels of {} {}\">{}</a>",
                Esc(model),
                Esc(layer_name),
                plural(layer.channels.len(), "channel", "channels")
            );
            let line = problem_line(layer);
            if !line.is_empty() {
                w!(
                    p.out,
                    "<br><span class=\"warn small\">{}</span>",
                    Esc(&line)
                );
            }
            p.out.push_str("</td>");
        }
        p.out.push_str("</tr>\n");
    }
    p.out.push_str("</table>\n");
    p.finish()
}

/// Where a layer's page links for the layer across models: the matching page of a run matched
/// across seeds (channel k of two seeds is unrelated), else the index-aligned comparison.
fn across(layer: &Layer) -> (String, &'static str) {
    if layer.matched {
        (paths::match_page(&layer.layer), "matched across seeds")
    } else {
        (paths::compare_layer(&layer.layer), "compare across models")
    }
}

/// `gallery/{model}/{layer}.html`: the contact sheet.
pub(crate) fn layer_page(key: &str, run_id: &str, layer: &Layer) -> String {
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    let mut p = Page::new(
        key,
        &format!("{model} / {name} · run {run_id}"),
        &[run_crumb(run_id)],
    );
    let (target, label) = across(layer);
    let compare = p.href(&target);
    w!(
        p.out,
        "<h1>{} / {}</h1>\n<p class=\"muted\">{} · <a href=\"{compare}\">{label}</a>",
        Esc(model),
        Esc(name),
        plural(layer.channels.len(), "channel", "channels")
    );
    let line = problem_line(layer);
    if !line.is_empty() {
        w!(p.out, " · <span class=\"warn\">{}</span>", Esc(&line));
    }
    p.out.push_str("</p>\n");
    view_switch(&mut p, layer, Some(layer.lead));
    for (n, sprite) in layer.sprites.iter().enumerate() {
        let chans = &layer.channels[sprite.first..sprite.first + sprite.count];
        let (first, last) = (chans[0].channel, chans[chans.len() - 1].channel);
        let (w, h) = (sprite.cols * layer.thumb, sprite.rows * layer.thumb);
        let src = p.href(&paths::sprite(model, name, n));
        w!(
            p.out,
            "<div class=\"sheet\" style=\"width:{w}px\"><img src=\"{src}\" width=\"{w}\" height=\"{h}\" \
            loading=\"lazy\" alt=\"{} {} channels {first:04} to {last:04}\">\
            <div class=\"grid\" style=\"grid-template-columns:repeat({},1fr);grid-template-rows:repeat({},1fr)\">",
            Esc(model),
            Esc(name),
            sprite.cols,
            sprite.rows
        );
        for c in chans {
            let href = p.href(&paths::channel_page(model, name, c.channel));
            let class = match (&c.image, &c.sidecar) {
                (ImageState::Missing, _) => "missing",
                (ImageState::Unreadable(_), _) => "unreadable",
                (_, SidecarState::Ok(_)) => "",
                _ => "nometa",
            };
            let mut title = format!("{:04} · objective {}", c.channel, fmt_objective(c));
            for s in channel_status(c) {
                title.push_str(" · ");
                title.push_str(&s);
            }
            w!(
                p.out,
                "<a href=\"{href}\" class=\"{class}\" title=\"{}\" aria-label=\"channel {:04}\"></a>",
                Esc(&title),
                c.channel
            );
        }
        p.out.push_str("</div></div>\n");
    }
    let troubled: Vec<&Channel> = layer
        .channels
        .iter()
        .filter(|c| !channel_status(c).is_empty())
        .collect();
    if !troubled.is_empty() {
        p.out.push_str("<h2>Problems</h2>\n<table>");
        for c in troubled {
            let href = p.href(&paths::channel_page(model, name, c.channel));
            w!(
                p.out,
                "<tr><td><a href=\"{href}\">{:04}</a></td><td class=\"warn\">{}</td></tr>",
                c.channel,
                Esc(&channel_status(c).join("; "))
            );
        }
        p.out.push_str("</table>\n");
    }
    p.finish()
}

/// Fields shown first on a channel page, in this order; the rest follow alphabetically.
const FIELD_ORDER: &[&str] = &[
    "objective_start",
    "objective_end",
    "steps",
    "updates",
    "size",
    "render_seconds",
    "seconds_per_image",
    "worker_id",
    "created_at",
    "code_version",
    "device",
    "settings",
    "task_id",
    "run_id",
    "model",
    "layer",
    "channel",
    "copy",
    "model",
    "png_sha256",
    "schema_version",
];

fn render_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<span class=\"muted\">null</span>"),
        Value::String(s) => w!(out, "{}", Esc(s)),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => {
                w!(out, "<span title=\"{n}\">{}</span>", fmt_f64(f))
            }
            _ => w!(out, "{n}"),
        },
        Value::Bool(b) => w!(out, "{b}"),
        Value::Object(map) => render_table(out, map, &[]),
        Value::Array(_) => w!(out, "{}", Esc(&value.to_string())),
    }
}

fn render_table(out: &mut String, map: &serde_json::Map<String, Value>, order: &[&str]) {
    out.push_str("<table>");
    let known = order.iter().filter_map(|k| map.get_key_value(*k));
    let mut rest: Vec<_> = map
        .iter()
        .filter(|(k, _)| !order.contains(&k.as_str()))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in known.chain(rest) {
        w!(out, "<tr><th>{}</th><td>", Esc(k));
        render_value(out, v);
        out.push_str("</td></tr>");
    }
    out.push_str("</table>");
}

/// `gallery/{model}/{layer}/{channel:04}.html`: one channel, its image and its metadata.
pub(crate) fn channel_page(key: &str, run_id: &str, layer: &Layer, i: usize) -> String {
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    let c = &layer.channels[i];
    let mut p = Page::new(
        key,
        &format!("{model} / {name} / {:04} · run {run_id}", c.channel),
        &[
            run_crumb(run_id),
            (paths::layer_page(model, name), format!("{model} / {name}")),
        ],
    );
    channel_nav(&mut p, layer, i);
    w!(
        p.out,
        "<h1>{} / {} / channel {:04}</h1>\n",
        Esc(model),
        Esc(name),
        c.channel
    );
    for s in channel_status(c) {
        w!(p.out, "<p class=\"bad\">{}</p>\n", Esc(&s));
    }
    p.out.push_str("<div class=\"channel\"><figure>");
    let png = layer.lead_image(c.channel);
    channel_figure_image(&mut p, model, name, c, &png);
    p.out.push_str("<figcaption>");
    if layer.lead != View::Channel {
        w!(p.out, "{} · ", Esc(&layer.lead.to_string()));
    }
    w!(p.out, "objective {}", Esc(&fmt_objective(c)));
    if !matches!(c.image, ImageState::Missing) {
        let href = p.href(&png);
        w!(p.out, " · <a href=\"{href}\">png</a>");
    }
    if !matches!(c.sidecar, SidecarState::Missing) {
        let href = p.href(&layer.lead_sidecar(c.channel));
        w!(p.out, " · <a href=\"{href}\">json</a>");
    }
    p.out.push_str("</figcaption></figure><div>");
    if let SidecarState::Ok(map) = &c.sidecar {
        render_table(&mut p.out, map, FIELD_ORDER);
    }
    p.out.push_str("</div></div>\n");
    view_figures(&mut p, model, name, c);
    examples::channel_examples(&mut p, layer, c.channel);
    p.finish()
}

/// "view: channel · neuron · … · dataset examples": links between a layer's contact sheet, its view
/// pages and its examples page, the current one (`None`: the examples page) unlinked; nothing when
/// the layer has only its lead view.
fn view_switch(p: &mut Page, layer: &Layer, current: Option<View>) {
    let others = layer.other_views();
    let examples = layer.examples.is_some();
    if others.is_empty() && !examples {
        return;
    }
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    p.out.push_str("<p class=\"views-nav\">view:");
    let views = std::iter::once(layer.lead).chain(others).map(Some);
    let examples_entry = examples.then_some(None);
    for view in views.chain(examples_entry) {
        let label = match view {
            Some(view) => Esc(&view.to_string()).to_string(),
            None => "dataset examples".to_owned(),
        };
        if view == current {
            w!(p.out, " <b>{label}</b>");
            continue;
        }
        let target = match view {
            Some(lead) if lead == layer.lead => paths::layer_page(model, name),
            Some(other) => paths::view_page(model, name, other),
            None => paths::examples_page(model, name),
        };
        let href = p.href(&target);
        w!(p.out, " <a href=\"{href}\">{label}</a>");
    }
    p.out.push_str("</p>\n");
}

/// `gallery/{model}/{layer}/view-{view}.html`: every channel of the layer that has `view`, its
/// images (every copy of a diversity view) lazy-loaded from the run, each linked to its channel's
/// page.
pub(crate) fn view_page(key: &str, run_id: &str, layer: &Layer, view: View) -> String {
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    let mut p = Page::new(
        key,
        &format!("{model} / {name} / {view} · run {run_id}"),
        &[
            run_crumb(run_id),
            (paths::layer_page(model, name), format!("{model} / {name}")),
        ],
    );
    let units: Vec<(&Channel, &ViewObjects)> = layer
        .channels
        .iter()
        .filter_map(|c| c.views.iter().find(|v| v.view == view).map(|v| (c, v)))
        .collect();
    w!(
        p.out,
        "<h1>{} / {} · {}</h1>\n<p class=\"muted\">{}</p>\n",
        Esc(model),
        Esc(name),
        Esc(&view.to_string()),
        plural(units.len(), "channel", "channels")
    );
    view_switch(&mut p, layer, Some(view));
    p.out.push_str("<div class=\"views\">");
    for (c, v) in units {
        let href = p.href(&paths::channel_page(model, name, c.channel));
        w!(p.out, "<figure><a href=\"{href}\">");
        for &copy in &v.copies {
            let src = p.href(&paths::view_image(model, name, c.channel, view, copy));
            w!(
                p.out,
                "<img src=\"{src}\" width=\"{}\" height=\"{}\" loading=\"lazy\" alt=\"{:04} copy {copy}\">",
                layer.thumb,
                layer.thumb,
                c.channel
            );
        }
        w!(
            p.out,
            "</a><figcaption>{:04}</figcaption></figure>",
            c.channel
        );
    }
    p.out.push_str("</div>\n");
    p.finish()
}

/// The channel's other views side by side: each image (every copy of a diversity view) full size,
/// captioned with the view and linked to its sidecar.
fn view_figures(p: &mut Page, model: &str, name: &str, c: &Channel) {
    if c.views.is_empty() {
        return;
    }
    p.out
        .push_str("<h2>Every view of this unit</h2>\n<div class=\"views\">");
    for v in &c.views {
        for &copy in &v.copies {
            let src = p.href(&paths::view_image(model, name, c.channel, v.view, copy));
            let label = if v.view.has_copies() {
                format!("{} · copy {copy}", v.view)
            } else {
                v.view.to_string()
            };
            w!(
                p.out,
                "<figure><img src=\"{src}\" alt=\"{}\" loading=\"lazy\"><figcaption>{}",
                Esc(&label),
                Esc(&label)
            );
            if v.sidecar && copy == v.copies[0] {
                let href = p.href(&paths::view_sidecar(model, name, c.channel, v.view));
                w!(p.out, " · <a href=\"{href}\">json</a>");
            }
            p.out.push_str("</figcaption></figure>");
        }
        if !v.sidecar {
            w!(
                p.out,
                "<p class=\"bad\">{}: sidecar missing</p>",
                Esc(&v.view.to_string())
            );
        }
    }
    p.out.push_str("</div>\n");
}

/// The previous / across-models / next links of channel `i`'s page.
fn channel_nav(p: &mut Page, layer: &Layer, i: usize) {
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    let c = &layer.channels[i];
    p.out.push_str("<div class=\"pn\">");
    if let Some(prev) = i.checked_sub(1).map(|j| &layer.channels[j]) {
        let href = p.href(&paths::channel_page(model, name, prev.channel));
        w!(
            p.out,
            "<a href=\"{href}\" rel=\"prev\">‹ {:04}</a>",
            prev.channel
        );
    }
    let (target, label) = if layer.matched {
        (paths::match_page(name), "its partners in every seed")
    } else {
        (
            paths::compare_channel(name, c.channel),
            "this channel across models",
        )
    };
    let compare = p.href(&target);
    w!(p.out, "<a href=\"{compare}\">{label}</a>");
    if let Some(next) = layer.channels.get(i + 1) {
        let href = p.href(&paths::channel_page(model, name, next.channel));
        w!(
            p.out,
            "<a href=\"{href}\" rel=\"next\">{:04} ›</a>",
            next.channel
        );
    }
    p.out.push_str("</div>\n");
}

/// A channel page's image, or a placeholder saying it is missing or unreadable.
fn channel_figure_image(p: &mut Page, model: &str, name: &str, c: &Channel, png: &str) {
    match &c.image {
        ImageState::Ok { width, height } => {
            let (w, h) = display_size(*width, *height, 256, 512);
            let src = p.href(png);
            w!(
                p.out,
                "<img src=\"{src}\" width=\"{w}\" height=\"{h}\" alt=\"{} {} channel {:04}\">",
                Esc(model),
                Esc(name),
                c.channel
            );
        }
        ImageState::Missing => p
            .out
            .push_str("<div class=\"ph\" style=\"width:256px;height:256px\">missing</div>"),
        ImageState::Unreadable(_) => {
            let href = p.href(png);
            w!(
                p.out,
                "<div class=\"ph\" style=\"width:256px;height:256px\"><a href=\"{href}\">unreadable</a></div>"
            );
        }
    }
}

/// Scales (`w`, `h`) so its longer side is at least `min` (if smaller) and at most `max`.
fn display_size(w: u32, h: u32, min: u32, max: u32) -> (u32, u32) {
    let long = w.max(h).max(1);
    let target = long.clamp(min, max);
    let scale =
        |v: u32| ((u64::from(v) * u64::from(target)).div_ceil(u64::from(long)) as u32).max(1);
    (scale(w), scale(h))
}

/// `gallery/compare/{layer}.html`: every channel, one tile per model.
pub(crate) fn compare_layer_page(
    key: &str,
    run_id: &str,
    name: &str,
    thumb: u32,
    per_model: &[(&str, Option<&Layer>)],
    numbers: &[u32],
) -> String {
    let mut p = Page::new(
        key,
        &format!("{name} across models · run {run_id}"),
        &[run_crumb(run_id)],
    );
    // one class per sprite keeps each tile's markup short
    p.out.push_str("<style>");
    w!(p.out, ".t{{width:{thumb}px;height:{thumb}px}}");
    for (s, (model, layer)) in per_model.iter().enumerate() {
        for n in 0..layer.map_or(0, |l| l.sprites.len()) {
            let url = css_string(&paths::relative(&p.key, &paths::sprite(model, name, n)));
            w!(p.out, ".p{s}-{n}{{background-image:url(\"{url}\")}}");
        }
    }
    p.out.push_str("</style>\n");
    w!(
        p.out,
        "<h1>{} across models</h1>\n<p class=\"muted\">{} · {} · each card shows the channel in every model, in this order:",
        Esc(name),
        plural(numbers.len(), "channel", "channels"),
        plural(per_model.len(), "model", "models")
    );
    for (s, (model, layer)) in per_model.iter().enumerate() {
        let sep = if s == 0 { "" } else { "," };
        if layer.is_some() {
            let href = p.href(&paths::layer_page(model, name));
            w!(p.out, "{sep} <a href=\"{href}\">{}</a>", Esc(model));
        } else {
            w!(
                p.out,
                "{sep} {} <span class=\"muted\">(no {})</span>",
                Esc(model),
                Esc(name)
            );
        }
    }
    p.out.push_str("</p>\n<div class=\"cards\">\n");
    let lookup: Vec<BTreeMap<u32, &Channel>> = per_model
        .iter()
        .map(|(_, l)| {
            l.iter()
                .flat_map(|l| &l.channels)
                .map(|c| (c.channel, c))
                .collect()
        })
        .collect();
    for &channel in numbers {
        let href = p.href(&paths::compare_channel(name, channel));
        w!(
            p.out,
            "<a class=\"card\" href=\"{href}\" title=\"channel {channel:04}\">"
        );
        for (s, model_channels) in lookup.iter().enumerate() {
            match model_channels.get(&channel) {
                Some(c) => {
                    let (x, y) = (c.tile.col * thumb, c.tile.row * thumb);
                    w!(
                        p.out,
                        "<span class=\"t p{s}-{}\" style=\"background-position:-{x}px -{y}px\"></span>",
                        c.tile.sprite
                    );
                }
                None => p.out.push_str("<span class=\"t none\"></span>"),
            }
        }
        w!(p.out, "<b>{channel:04}</b></a>\n");
    }
    p.out.push_str("</div>\n");
    p.finish()
}

/// One model's figure of a channel on its across-models page: the image linked to the model's own
/// channel page, its objective and what is wrong with it.
fn compare_figure(p: &mut Page, layer: &Layer, c: &Channel) {
    let (model, name) = (layer.model.as_str(), layer.layer.as_str());
    let channel = c.channel;
    let page = p.href(&paths::channel_page(model, name, channel));
    match &c.image {
        ImageState::Ok { width, height } => {
            let (w, h) = display_size(*width, *height, 224, 224);
            let src = p.href(&layer.lead_image(channel));
            w!(
                p.out,
                "<a href=\"{page}\"><img src=\"{src}\" width=\"{w}\" height=\"{h}\" alt=\"{} {} channel {channel:04}\"></a>",
                Esc(model),
                Esc(name)
            );
        }
        _ => w!(
            p.out,
            "<a class=\"ph\" style=\"width:224px;height:224px\" href=\"{page}\">{}</a>",
            if c.image == ImageState::Missing {
                "missing"
            } else {
                "unreadable"
            }
        ),
    }
    w!(
        p.out,
        "<figcaption><a href=\"{page}\">{}</a><br>objective {}",
        Esc(model),
        Esc(&fmt_objective(c))
    );
    for s in channel_status(c) {
        w!(p.out, "<br><span class=\"warn\">{}</span>", Esc(&s));
    }
    p.out.push_str("</figcaption>");
}

/// `gallery/compare/{layer}/{channel:04}.html`: one channel in every model, side by side.
pub(crate) fn compare_channel_page(
    key: &str,
    run_id: &str,
    name: &str,
    channel: u32,
    per_model: &[(&str, Option<&Layer>)],
    (prev, next): (Option<u32>, Option<u32>),
) -> String {
    let mut p = Page::new(
        key,
        &format!("{name} / {channel:04} across models · run {run_id}"),
        &[
            run_crumb(run_id),
            (paths::compare_layer(name), format!("{name} across models")),
        ],
    );
    p.out.push_str("<div class=\"pn\">");
    if let Some(prev) = prev {
        let href = p.href(&paths::compare_channel(name, prev));
        w!(p.out, "<a href=\"{href}\" rel=\"prev\">‹ {prev:04}</a>");
    }
    if let Some(next) = next {
        let href = p.href(&paths::compare_channel(name, next));
        w!(p.out, "<a href=\"{href}\" rel=\"next\">{next:04} ›</a>");
    }
    p.out.push_str("</div>\n");
    w!(
        p.out,
        "<h1>{} / channel {channel:04} across models</h1>\n<div class=\"models\">\n",
        Esc(name)
    );
    for &(model, layer) in per_model {
        p.out.push_str("<figure>");
        let shown = layer.and_then(|l| {
            l.channels
                .iter()
                .find(|c| c.channel == channel)
                .map(|c| (l, c))
        });
        match shown {
            Some((l, c)) => compare_figure(&mut p, l, c),
            None => w!(
                p.out,
                "<div class=\"ph\" style=\"width:224px;height:224px\">not rendered</div>\
                <figcaption>{}</figcaption>",
                Esc(model)
            ),
        }
        p.out.push_str("</figure>\n");
    }
    p.out.push_str("</div>\n");
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            Esc("<a href=\"x\" title='y'>&amp;</a>").to_string(),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(Esc("plain ü").to_string(), "plain ü");
        assert_eq!(css_string("../a-1.png"), "../a-1.png");
        assert_eq!(css_string("a\"</style>"), "a\\22 \\3c /style\\3e ");
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(fmt_f64(4.512714385986328), "4.5127");
        assert_eq!(fmt_f64(128.0), "128");
        assert_eq!(fmt_f64(1.5e-7), "1.5000e-7");
        assert_eq!(display_size(128, 128, 256, 512), (256, 256));
        assert_eq!(display_size(1024, 512, 256, 512), (512, 256));
        assert_eq!(display_size(300, 300, 256, 512), (300, 300));
    }
}
