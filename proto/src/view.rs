//! The views of a unit (issue 17): the ways Microscope and the Distill articles show one unit, each
//! its own task, key and sidecar.
//!
//! - `channel`: lucid's `objectives.channel`, the channel's mean over every position.
//! - `negative_channel`: minus that mean (lucid's `-objectives.channel`): what the channel is least
//!   like.
//! - `neuron`: lucid's `objectives.neuron`, the channel at the centre position only.
//! - `diversity:N`: N copies optimised together for the channel objective minus λ times lucid's
//!   diversity term (the mean over copies of the summed cosine similarity of their Gram matrices at
//!   the target layer; `objectives.diversity`), each copy stored as its own image.
//!
//! A view's text form is what a spec's `views` lists; its slug is what keys and task ids carry
//! (none for `channel`, so that the keys of every run before views keep their names).

use std::fmt;
use std::str::FromStr;

use crate::spec::Objective;
use crate::text_forms::serde_as_text;

/// Fewest copies of a diversity view: one copy has nothing to differ from.
pub const MIN_DIVERSITY_COPIES: u32 = 2;
/// Most copies of a diversity view: its copies share one optimisation (and one batch).
pub const MAX_DIVERSITY_COPIES: u32 = 16;

/// The views a spec may name, as its error messages list them.
pub const VALID_VIEWS: &str = "channel, negative_channel, neuron, diversity:N (N copies, 2 to 16)";

/// One way of showing a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum View {
    /// The channel's mean activation, maximised.
    #[default]
    Channel,
    /// The channel's mean activation, minimised.
    NegativeChannel,
    /// The channel at the centre position, maximised.
    Neuron,
    /// `copies` images of the channel objective, pushed apart by the diversity term.
    Diversity {
        /// Images of the unit, [`MIN_DIVERSITY_COPIES`] to [`MAX_DIVERSITY_COPIES`].
        copies: u32,
    },
}

/// A view name that is not one of [`VALID_VIEWS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown view {name:?}: expected one of {VALID_VIEWS}")]
pub struct UnknownView {
    /// The name given.
    pub name: String,
}

impl View {
    /// The view that renders `objective` alone: how a spec without `views` reads.
    pub fn of_objective(objective: Objective) -> Self {
        match objective {
            Objective::Channel => View::Channel,
            Objective::NegativeChannel => View::NegativeChannel,
            Objective::Neuron => View::Neuron,
        }
    }

    /// The objective its images maximise (the diversity term comes on top of the channel's).
    pub fn objective(self) -> Objective {
        match self {
            View::Channel | View::Diversity { .. } => Objective::Channel,
            View::NegativeChannel => Objective::NegativeChannel,
            View::Neuron => Objective::Neuron,
        }
    }

    /// Images one task of this view makes.
    pub fn images(self) -> u32 {
        match self {
            View::Diversity { copies } => copies,
            _ => 1,
        }
    }

    /// Whether its images are numbered copies (`0007.diversity-4.2.png`).
    pub fn has_copies(self) -> bool {
        matches!(self, View::Diversity { .. })
    }

    /// What keys and task ids carry: `None` for `channel`, else `negative_channel`, `neuron`,
    /// `diversity-4` (no `:`, which object stores and file systems treat specially).
    pub fn slug(self) -> Option<String> {
        match self {
            View::Channel => None,
            View::NegativeChannel => Some("negative_channel".into()),
            View::Neuron => Some("neuron".into()),
            View::Diversity { copies } => Some(format!("diversity-{copies}")),
        }
    }

    /// The view whose [`View::slug`] is `slug`.
    pub fn from_slug(slug: &str) -> Option<Self> {
        match slug {
            "negative_channel" => Some(View::NegativeChannel),
            "neuron" => Some(View::Neuron),
            _ => {
                let copies = slug.strip_prefix("diversity-")?;
                Self::diversity(copies).filter(|v| v.slug().as_deref() == Some(slug))
            }
        }
    }

    fn diversity(copies: &str) -> Option<Self> {
        let copies: u32 = copies.parse().ok()?;
        (MIN_DIVERSITY_COPIES..=MAX_DIVERSITY_COPIES)
            .contains(&copies)
            .then_some(View::Diversity { copies })
    }
}

impl fmt::Display for View {
    /// The spec's form: `channel`, `negative_channel`, `neuron`, `diversity:4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            View::Channel => f.write_str("channel"),
            View::NegativeChannel => f.write_str("negative_channel"),
            View::Neuron => f.write_str("neuron"),
            View::Diversity { copies } => write!(f, "diversity:{copies}"),
        }
    }
}

impl FromStr for View {
    type Err = UnknownView;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownView {
            name: name.to_owned(),
        };
        match name {
            "channel" => Ok(View::Channel),
            "negative_channel" => Ok(View::NegativeChannel),
            "neuron" => Ok(View::Neuron),
            _ => name
                .strip_prefix("diversity:")
                .and_then(Self::diversity)
                .filter(|v| v.to_string() == name)
                .ok_or_else(unknown),
        }
    }
}

serde_as_text!(View);

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [View; 5] = [
        View::Channel,
        View::NegativeChannel,
        View::Neuron,
        View::Diversity { copies: 2 },
        View::Diversity { copies: 16 },
    ];

    #[test]
    fn names_and_slugs_round_trip() {
        for view in ALL {
            assert_eq!(view.to_string().parse::<View>(), Ok(view), "{view}");
            match view.slug() {
                Some(slug) => assert_eq!(View::from_slug(&slug), Some(view), "{slug}"),
                None => assert_eq!(view, View::Channel),
            }
            let json = serde_json::to_string(&view).unwrap();
            assert_eq!(serde_json::from_str::<View>(&json).unwrap(), view);
        }
        assert_eq!(
            View::Diversity { copies: 4 }.slug().as_deref(),
            Some("diversity-4")
        );
    }

    #[test]
    fn unknown_names_are_refused_naming_the_valid_ones() {
        for bad in [
            "",
            "Channel",
            "negative",
            "diversity",
            "diversity:1",
            "diversity:17",
            "diversity:04",
            "diversity:+4",
            "diversity-4",
        ] {
            let err = bad.parse::<View>().unwrap_err();
            assert!(err.to_string().contains(VALID_VIEWS), "{bad}: {err}");
        }
        for bad in ["channel", "diversity:4", "diversity-04", "diversity-1", "x"] {
            assert_eq!(View::from_slug(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_view_has_its_objective_and_image_count() {
        assert_eq!(View::of_objective(Objective::Neuron), View::Neuron);
        assert_eq!(
            View::Diversity { copies: 4 }.objective(),
            Objective::Channel
        );
        assert_eq!(
            View::NegativeChannel.objective(),
            Objective::NegativeChannel
        );
        assert_eq!(View::Diversity { copies: 4 }.images(), 4);
        assert_eq!(View::Neuron.images(), 1);
    }
}
