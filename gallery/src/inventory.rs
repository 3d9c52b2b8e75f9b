//! The run's channels, from a listing: which models, layers and channels exist, and which of a channel's
//! two objects (PNG, sidecar) are there.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use lucid_proto::View;
use lucid_proto::keys::{Kind, StoredKey, parse_key};

/// Which of a channel's objects the listing holds: the channel view's, and those of its other views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Presence {
    pub png: bool,
    pub sidecar: bool,
    pub views: Vec<ViewObjects>,
}

/// The stored objects of one other view (issue 17) of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewObjects {
    pub view: View,
    /// The copies whose PNG is stored, ascending (0 for a view without copies).
    pub copies: Vec<u32>,
    pub sidecar: bool,
}

/// One layer's channels, in numeric order, with what exists of each.
pub(crate) type LayerChannels = Vec<(u32, Presence)>;

/// Channels by model and layer; models and layers in natural order (`s2` before `s10`), channels in
/// numeric order.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    pub models: Vec<(String, Vec<(String, LayerChannels)>)>,
    /// Every layer of any model, in natural order.
    pub layer_names: Vec<String>,
}

impl Inventory {
    /// Groups the channel objects among `keys` (relative to the run root). Only keys of exactly
    /// `{model}/{layer}/{channel:04}.{png|json}` with valid identifiers count; everything else (the
    /// manifest, an earlier gallery, foreign objects) is ignored.
    pub(crate) fn from_keys(keys: &[String]) -> Self {
        let mut tree: BTreeMap<String, BTreeMap<String, BTreeMap<u32, Presence>>> = BTreeMap::new();
        let mut others: BTreeMap<(String, String, u32), BTreeMap<View, ViewObjects>> =
            BTreeMap::new();
        for key in keys {
            if key.split('/').count() != 3 {
                continue;
            }
            let Some(StoredKey { id, kind, copy }) = parse_key(key) else {
                continue;
            };
            if id.view != View::Channel {
                let unit = (id.model.to_string(), id.layer.to_string(), id.channel);
                let objects = others
                    .entry(unit)
                    .or_default()
                    .entry(id.view)
                    .or_insert_with(|| ViewObjects {
                        view: id.view,
                        copies: Vec::new(),
                        sidecar: false,
                    });
                match kind {
                    Kind::Png => objects.copies.push(copy),
                    Kind::Sidecar => objects.sidecar = true,
                }
                continue;
            }
            let (model, layer, channel) = (id.model, id.layer, id.channel);
            let presence = tree
                .entry(model.as_str().to_owned())
                .or_default()
                .entry(layer.as_str().to_owned())
                .or_default()
                .entry(channel)
                .or_default();
            match kind {
                Kind::Png => presence.png = true,
                Kind::Sidecar => presence.sidecar = true,
            }
        }
        attach_views(&mut tree, others);
        let mut layer_names: Vec<String> = tree
            .values()
            .flat_map(|layers| layers.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        layer_names.sort_by(|a, b| natural_cmp(a, b));
        let mut models: Vec<_> = tree
            .into_iter()
            .map(|(model, layers)| {
                let mut layers: Vec<_> = layers
                    .into_iter()
                    .map(|(layer, channels)| (layer, channels.into_iter().collect()))
                    .collect();
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

/// Puts each channel's other views beside it, to be shown on its page; a unit without a channel
/// view is not shown yet.
fn attach_views(
    tree: &mut BTreeMap<String, BTreeMap<String, BTreeMap<u32, Presence>>>,
    others: BTreeMap<(String, String, u32), BTreeMap<View, ViewObjects>>,
) {
    for ((model, layer, channel), views) in others {
        if let Some(presence) = tree
            .get_mut(&model)
            .and_then(|layers| layers.get_mut(&layer))
            .and_then(|channels| channels.get_mut(&channel))
        {
            presence.views = views
                .into_values()
                .map(|mut v| {
                    v.copies.sort_unstable();
                    v
                })
                .collect();
        }
    }
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
            // a view of a unit without its channel view is not shown yet
            "s2/conv1/0009.neuron.png",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let inv = Inventory::from_keys(&keys);
        let models: Vec<&str> = inv.models.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(models, ["s2", "s10"]);
        let layers: Vec<&str> = inv.models[0].1.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(layers, ["conv1", "conv2", "conv10"]);
        assert_eq!(inv.layer_names, ["conv1", "conv2", "conv10"]);
        assert_eq!(
            inv.models[0].1[0].1,
            vec![(
                1,
                Presence {
                    png: true,
                    sidecar: true,
                    views: vec![
                        ViewObjects {
                            view: View::Neuron,
                            copies: vec![0],
                            sidecar: true,
                        },
                        ViewObjects {
                            view: View::Diversity { copies: 2 },
                            copies: vec![0, 1],
                            sidecar: false,
                        },
                    ],
                }
            )]
        );
        assert_eq!(
            inv.models[0].1[2].1,
            vec![(
                0,
                Presence {
                    png: false,
                    sidecar: true,
                    views: Vec::new(),
                }
            )]
        );
    }
}
