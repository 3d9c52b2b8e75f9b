//! The run's channels, from a listing: which models, layers and channels exist, and which of a channel's
//! two objects (PNG, sidecar) are there.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use lucid_proto::View;
use lucid_proto::keys::{Kind, StoredKey, parse_key};

/// Which of a channel's objects the listing holds: its layer's lead view's, and those of its other
/// views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Presence {
    /// The lead view's image (copy 0 of a view with copies).
    pub png: bool,
    /// The lead view's sidecar.
    pub sidecar: bool,
    /// The other views, in view order.
    pub views: Vec<ViewObjects>,
}

/// The stored objects of one view (issue 17) of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewObjects {
    pub view: View,
    /// The copies whose PNG is stored, ascending (0 for a view without copies).
    pub copies: Vec<u32>,
    pub sidecar: bool,
}

/// One layer's channels, in numeric order, with what exists of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerChannels {
    /// The view the layer's contact sheet and channel pages lead with: the channel view when any
    /// channel of the layer has it (a channel still missing it shows as missing there), otherwise
    /// the first view stored, so that a run of other views only (`views = ["neuron"]`) has pages.
    pub lead: View,
    pub channels: Vec<(u32, Presence)>,
}

/// Every view's objects of each channel of one layer, as the listing holds them.
type LayerObjects = BTreeMap<u32, BTreeMap<View, ViewObjects>>;

/// Channels by model and layer; models and layers in natural order (`s2` before `s10`), channels in
/// numeric order.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    pub models: Vec<(String, Vec<(String, LayerChannels)>)>,
    /// Every layer of any model, in natural order.
    pub layer_names: Vec<String>,
}

impl Inventory {
    /// Groups the result objects among `keys` (relative to the run root). Only keys of exactly
    /// `{model}/{layer}/{channel:04}[.{view}[.{copy}]].{png|json}` with valid identifiers count;
    /// everything else (the manifest, an earlier gallery, foreign objects) is ignored.
    pub(crate) fn from_keys(keys: &[String]) -> Self {
        let mut objects: BTreeMap<(String, String), LayerObjects> = BTreeMap::new();
        for key in keys {
            if key.split('/').count() != 3 {
                continue;
            }
            let Some(StoredKey { id, kind, copy }) = parse_key(key) else {
                continue;
            };
            let layer = (id.model.to_string(), id.layer.to_string());
            let stored = objects
                .entry(layer)
                .or_default()
                .entry(id.channel)
                .or_default()
                .entry(id.view)
                .or_insert_with(|| ViewObjects {
                    view: id.view,
                    copies: Vec::new(),
                    sidecar: false,
                });
            match kind {
                Kind::Png => stored.copies.push(copy),
                Kind::Sidecar => stored.sidecar = true,
            }
        }
        let mut tree: BTreeMap<String, Vec<(String, LayerChannels)>> = BTreeMap::new();
        for ((model, layer), channels) in objects {
            tree.entry(model).or_default().push((layer, led(channels)));
        }
        let mut layer_names: Vec<String> = tree
            .values()
            .flat_map(|layers| layers.iter().map(|(layer, _)| layer.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        layer_names.sort_by(|a, b| natural_cmp(a, b));
        let mut models: Vec<_> = tree
            .into_iter()
            .map(|(model, mut layers)| {
                layers.sort_by(|(a, _), (b, _)| natural_cmp(a, b));
                (model, layers)
            })
            .collect();
        models.sort_by(|(a, _), (b, _)| natural_cmp(a, b));
        Self {
            models,
            layer_names,
        }
    }
}

/// A layer's channels around its lead view (the first view any channel has: [`View::Channel`]
/// sorts first).
fn led(channels: LayerObjects) -> LayerChannels {
    let lead = channels
        .values()
        .flat_map(|views| views.keys())
        .min()
        .copied()
        .unwrap_or_default();
    let channels = channels
        .into_iter()
        .map(|(channel, mut views)| {
            let led = views.remove(&lead);
            let presence = Presence {
                png: led.as_ref().is_some_and(|v| v.copies.contains(&0)),
                sidecar: led.is_some_and(|v| v.sidecar),
                views: views
                    .into_values()
                    .map(|mut v| {
                        v.copies.sort_unstable();
                        v
                    })
                    .collect(),
            };
            (channel, presence)
        })
        .collect();
    LayerChannels { lead, channels }
}

/// Orders strings with runs of ASCII digits compared by value: `conv2` < `conv10`, `s_02` < `s_3`.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let by_value = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                // equal values: fewer leading zeros first, so distinct strings never compare equal
                if da != db {
                    return da.cmp(&db);
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&d| d == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec![
            "conv10", "conv2", "fc6", "conv1", "s_010", "s_10", "s_9", "a",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "a", "conv1", "conv2", "conv10", "fc6", "s_9", "s_10", "s_010"
            ]
        );
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
    }

    #[test]
    fn groups_channel_keys() {
        let keys: Vec<String> = [
            "run.json",
            "s10/conv1/0001.png",
            "s2/conv1/0001.png",
            "s2/conv1/0001.json",
            "s2/conv10/0000.json",
            "s2/conv2/0003.png",
            "gallery/s2/conv1/0001.html",
            "gallery/s2/conv1-0.png",
            "x/s2/conv1/0002.png",
            "s2/conv1/7.png",
            "s2/conv1/0001.neuron.png",
            "s2/conv1/0001.neuron.json",
            "s2/conv1/0001.diversity-2.1.png",
            "s2/conv1/0001.diversity-2.0.png",
            // a unit without its channel view, in a layer that has it: missing there, its view kept
            "s2/conv1/0009.neuron.png",
            // a layer of other views only leads with the first of them
            "s2/conv3/0004.neuron.png",
            "s2/conv3/0004.neuron.json",
            "s2/conv3/0004.diversity-2.0.png",
            "s2/conv3/0005.diversity-2.0.png",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let inv = Inventory::from_keys(&keys);
        let models: Vec<&str> = inv.models.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(models, ["s2", "s10"]);
        let layers: Vec<&str> = inv.models[0].1.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(layers, ["conv1", "conv2", "conv3", "conv10"]);
        assert_eq!(inv.layer_names, ["conv1", "conv2", "conv3", "conv10"]);
        let neuron = |sidecar| ViewObjects {
            view: View::Neuron,
            copies: vec![0],
            sidecar,
        };
        let conv1 = &inv.models[0].1[0].1;
        assert_eq!(conv1.lead, View::Channel);
        assert_eq!(
            conv1.channels[1],
            (
                9,
                Presence {
                    png: false,
                    sidecar: false,
                    views: vec![neuron(false)],
                }
            )
        );
        assert_eq!(
            conv1.channels[..1],
            [(
                1,
                Presence {
                    png: true,
                    sidecar: true,
                    views: vec![
                        neuron(true),
                        ViewObjects {
                            view: View::Diversity { copies: 2 },
                            copies: vec![0, 1],
                            sidecar: false,
                        },
                    ],
                }
            )]
        );
        let conv3 = &inv.models[0].1[2].1;
        assert_eq!(conv3.lead, View::Neuron);
        let diversity = ViewObjects {
            view: View::Diversity { copies: 2 },
            copies: vec![0],
            sidecar: false,
        };
        assert_eq!(
            conv3.channels,
            [
                (
                    4,
                    Presence {
                        png: true,
                        sidecar: true,
                        views: vec![diversity.clone()],
                    }
                ),
                (
                    5,
                    Presence {
                        png: false,
                        sidecar: false,
                        views: vec![diversity],
                    }
                )
            ]
        );
        assert_eq!(
            inv.models[0].1[3].1,
            LayerChannels {
                lead: View::Channel,
                channels: vec![(
                    0,
                    Presence {
                        png: false,
                        sidecar: true,
                        views: Vec::new(),
                    }
                )]
            }
        );
    }
}
