//! Which input pixels one output position of a tap reads: its receptive field, computed from the
//! network's own geometry (kernels, strides, dilations and padding of every node a tap depends on),
//! so that a dataset example can be cropped to the part of the image a unit saw.
//!
//! The recurrence is Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural
//! Networks", Distill 2019 (doi:10.23915/distill.00021), eqs. 1–3, per axis: with `r` the field's
//! size, `j` its jump (the input distance between neighbouring outputs) and `p` its offset (how far
//! output 0's field starts before input pixel 0), a window of kernel `k`, stride `s`, dilation `d`
//! and leading padding `b` gives `r' = r + d·(k − 1)·j`, `j' = j·s`, `p' = p + b·j`. TensorFlow's SAME
//! padding depends on the input's side, so the field is computed for one input size. Branches that
//! meet at an add or a concat read the union of their fields.

use std::collections::BTreeMap;

use crate::description::{NamedPadding, Node, Padding, Pair, Tap};
use crate::error::NetworkError;
use crate::graph::Source;
use crate::network::Network;
use crate::shape::{Params, Shape};

/// One axis of a receptive field: output index `u` reads input pixels `u·jump − offset` up to (not
/// including) `u·jump − offset + size`, before clipping to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    /// Pixels one output reads along this axis, padding included.
    pub size: usize,
    /// Input pixels between neighbouring outputs (the product of the strides).
    pub jump: usize,
    /// How many pixels output 0's field starts before the image (the padding, in input pixels).
    pub offset: usize,
}

impl Axis {
    /// The identity: the image itself.
    const PIXEL: Axis = Axis {
        size: 1,
        jump: 1,
        offset: 0,
    };

    /// The input pixels `[start, end)` that output `u` reads, clipped to an image of `side` px.
    pub fn window(&self, u: usize, side: usize) -> (usize, usize) {
        let start = (u * self.jump).saturating_sub(self.offset);
        let end = (u * self.jump + self.size).saturating_sub(self.offset);
        (start.min(side), end.min(side))
    }

    /// After a window of `kernel` (dilation included) with `stride` and `before` pixels of leading
    /// padding (Distill eqs. 1–3).
    fn through(self, reach: usize, stride: usize, before: usize) -> Axis {
        Axis {
            size: self.size + (reach - 1) * self.jump,
            jump: self.jump * stride,
            offset: self.offset + before * self.jump,
        }
    }

    /// The smallest field that holds both, when their outputs line up (equal jumps).
    fn union(self, other: Axis) -> Option<Axis> {
        if self.jump != other.jump {
            return None;
        }
        let offset = self.offset.max(other.offset);
        // both ends measured from `-offset`, the earlier start
        let end = (offset - self.offset + self.size).max(offset - other.offset + other.size);
        Some(Axis {
            size: end,
            jump: self.jump,
            offset,
        })
    }
}

/// The part of the input that one output position of a tap depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceptiveField {
    /// Each output position reads a window of the image.
    Local {
        /// Along the height.
        rows: Axis,
        /// Along the width.
        cols: Axis,
    },
    /// Every output reads the whole image: after a global pool, a flatten or a linear layer, or
    /// where branches with different strides meet.
    Whole,
}

impl ReceptiveField {
    /// The crop `(top, left, bottom, right)`, exclusive at the end, of an image of `side` × `side` px
    /// that output position `(y, x)` reads.
    pub fn crop(&self, y: usize, x: usize, side: usize) -> (usize, usize, usize, usize) {
        match self {
            ReceptiveField::Local { rows, cols } => {
                let (top, bottom) = rows.window(y, side);
                let (left, right) = cols.window(x, side);
                (top, left, bottom, right)
            }
            ReceptiveField::Whole => (0, 0, side, side),
        }
    }

    fn through(
        self,
        reach: (usize, usize),
        stride: (usize, usize),
        before: (usize, usize),
    ) -> Self {
        match self {
            ReceptiveField::Local { rows, cols } => ReceptiveField::Local {
                rows: rows.through(reach.0, stride.0, before.0),
                cols: cols.through(reach.1, stride.1, before.1),
            },
            ReceptiveField::Whole => ReceptiveField::Whole,
        }
    }

    fn union(self, other: Self) -> Self {
        match (self, other) {
            (
                ReceptiveField::Local { rows, cols },
                ReceptiveField::Local {
                    rows: other_rows,
                    cols: other_cols,
                },
            ) => match (rows.union(other_rows), cols.union(other_cols)) {
                (Some(rows), Some(cols)) => ReceptiveField::Local { rows, cols },
                _ => ReceptiveField::Whole,
            },
            _ => ReceptiveField::Whole,
        }
    }
}

impl Network {
    /// The receptive field of `tap`'s outputs for a square input of `side` px; the errors of
    /// [`Network::tap_shape`] when the tap has no output at that size.
    pub fn receptive_field(&self, tap: &Tap, side: usize) -> Result<ReceptiveField, NetworkError> {
        let target = self.tap_node(tap);
        let shapes = self.node_shapes(target, side)?;
        let image = ReceptiveField::Local {
            rows: Axis::PIXEL,
            cols: Axis::PIXEL,
        };
        let mut fields: BTreeMap<usize, ReceptiveField> = BTreeMap::new();
        for &i in shapes.keys() {
            let inputs: Vec<(ReceptiveField, Shape)> = self.graph.sources[i]
                .iter()
                .map(|s| match s {
                    Source::Input => (image, self.input_shape(side)),
                    Source::Node(j) => (fields[j], shapes[j]),
                })
                .collect();
            fields.insert(i, self.node_field(i, &inputs));
        }
        Ok(fields[&target])
    }

    /// The field of node `i`'s outputs, from its inputs' fields and shapes.
    fn node_field(&self, i: usize, inputs: &[(ReceptiveField, Shape)]) -> ReceptiveField {
        let Some(&(first, shape)) = inputs.first() else {
            return ReceptiveField::Whole;
        };
        let Shape::Spatial { h, w, .. } = shape else {
            return ReceptiveField::Whole;
        };
        match &self.graph.nodes[i] {
            Node::Conv(c) => {
                let Params::Conv { kernel, .. } = self.shapes[i].params else {
                    return ReceptiveField::Whole;
                };
                let (dh, dw) = c.dilation.hw();
                let reach = (dh * (kernel.0 - 1) + 1, dw * (kernel.1 - 1) + 1);
                window_field(first, (h, w), reach, c.stride.hw(), c.padding)
            }
            Node::MaxPool(p) | Node::AvgPool(p) => {
                let stride: Pair = p.stride.unwrap_or(p.kernel);
                window_field(first, (h, w), p.kernel.hw(), stride.hw(), p.padding)
            }
            Node::Add(_) | Node::Concat(_) => inputs
                .iter()
                .map(|(field, _)| *field)
                .reduce(ReceptiveField::union)
                .unwrap_or(ReceptiveField::Whole),
            Node::Relu(_) | Node::Activation(_) | Node::BatchNorm(_) | Node::Lrn(_) => first,
            Node::AdaptiveAvgPool(_) | Node::Flatten(_) | Node::Linear(_) => ReceptiveField::Whole,
        }
    }
}

/// `field` after a window of `reach` × `stride` over an input of `sides`, padded as `padding` says.
fn window_field(
    field: ReceptiveField,
    sides: (usize, usize),
    reach: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> ReceptiveField {
    let before = match padding {
        Padding::Named(NamedPadding::Same) => (
            same_before(sides.0, reach.0, stride.0),
            same_before(sides.1, reach.1, stride.1),
        ),
        Padding::Named(NamedPadding::Valid) => (0, 0),
        Padding::Symmetric(p) => (p as usize, p as usize),
        Padding::Explicit([top, _, left, _]) => (top as usize, left as usize),
    };
    field.through(reach, stride, before)
}

/// TensorFlow SAME's leading padding: half the total, the odd pixel going to the end.
fn same_before(input: usize, reach: usize, stride: usize) -> usize {
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + reach).saturating_sub(input);
    total / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_at_the_end() {
        // 5 px, kernel 4, stride 1: 3 pixels of padding, 1 before and 2 after
        assert_eq!(same_before(5, 4, 1), 1);
        // 224 px, kernel 3, stride 2: 112 outputs need 225 px, the 1 pixel goes after
        assert_eq!(same_before(224, 3, 2), 0);
        assert_eq!(same_before(26, 5, 1), 2);
    }

    #[test]
    fn a_window_is_clipped_to_the_image() {
        let axis = Axis {
            size: 7,
            jump: 2,
            offset: 3,
        };
        assert_eq!(axis.window(0, 10), (0, 4));
        assert_eq!(axis.window(2, 10), (1, 8));
        assert_eq!(axis.window(5, 10), (7, 10));
    }

    #[test]
    fn a_union_spans_both_fields() {
        let a = Axis {
            size: 3,
            jump: 1,
            offset: 1,
        };
        let b = Axis {
            size: 1,
            jump: 1,
            offset: 0,
        };
        // a reads [-1, 2), b reads [0, 1): together [-1, 2)
        assert_eq!(a.union(b), Some(a));
        let c = Axis {
            size: 5,
            jump: 1,
            offset: 0,
        };
        // a [-1, 2) and c [0, 5): [-1, 5), 6 px from offset 1
        assert_eq!(
            a.union(c),
            Some(Axis {
                size: 6,
                jump: 1,
                offset: 1
            })
        );
        assert_eq!(a.union(Axis { jump: 2, ..a }), None);
    }
}
