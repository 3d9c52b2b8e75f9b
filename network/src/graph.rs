//! A description checked into a graph: names resolved, nodes in an order where every input comes
//! first, cycles refused naming their nodes.

use std::collections::{BTreeMap, BTreeSet};

use crate::description::{Description, INPUT, Node};
use crate::error::{NetworkError, closest_first};

/// Where a node's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The image.
    Input,
    /// The node at this index of [`Graph::nodes`].
    Node(usize),
}

/// The nodes of a description in evaluation order, each with its inputs resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Nodes sorted so that every node comes after the nodes it reads.
    pub nodes: Vec<Node>,
    /// `sources[i]`: what node `i` reads, in the order of [`Node::inputs`].
    pub sources: Vec<Vec<Source>>,
}

impl Graph {
    /// Resolves `description`'s names and sorts its nodes (Kahn's algorithm; among ready nodes the
    /// one written first goes first, so a chain keeps its written order).
    pub fn build(description: &Description) -> Result<Self, NetworkError> {
        let network = &description.name;
        let index = node_index(description)?;
        let mut reads: Vec<Vec<usize>> = Vec::with_capacity(description.nodes.len());
        for node in &description.nodes {
            let mut mine = Vec::new();
            for input in node.inputs() {
                if input == INPUT {
                    continue;
                }
                let Some(&i) = index.get(input) else {
                    return Err(NetworkError::UnknownInput {
                        network: network.as_str().into(),
                        node: node.name().to_owned(),
                        input: input.to_owned(),
                        closest: closest_first(input, index.keys().copied())
                            .into_iter()
                            .take(3)
                            .collect(),
                    });
                };
                mine.push(i);
            }
            reads.push(mine);
        }
        let order = topological_order(&reads).map_err(|stuck| NetworkError::Cycle {
            network: network.as_str().into(),
            nodes: find_cycle(&reads, &stuck)
                .into_iter()
                .map(|i| description.nodes[i].name().to_owned())
                .collect(),
        })?;
        Ok(Self::in_order(description, &index, &order))
    }

    fn in_order(description: &Description, index: &BTreeMap<&str, usize>, order: &[usize]) -> Self {
        let mut position = vec![0; order.len()];
        for (pos, &i) in order.iter().enumerate() {
            position[i] = pos;
        }
        let nodes: Vec<Node> = order
            .iter()
            .map(|&i| description.nodes[i].clone())
            .collect();
        let sources = nodes
            .iter()
            .map(|node| {
                node.inputs()
                    .into_iter()
                    .map(|input| match index.get(input) {
                        Some(&i) => Source::Node(position[i]),
                        None => Source::Input,
                    })
                    .collect()
            })
            .collect();
        Self { nodes, sources }
    }

    /// The index of the node called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    /// Node `target` and every node it depends on, ascending.
    pub fn ancestors(&self, target: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if seen.insert(i) {
                todo.extend(self.sources[i].iter().filter_map(|s| match s {
                    Source::Node(j) => Some(*j),
                    Source::Input => None,
                }));
            }
        }
        seen
    }
}

/// Node names to their written index; the input's name and repeated names are refused.
fn node_index(description: &Description) -> Result<BTreeMap<&str, usize>, NetworkError> {
    let mut index = BTreeMap::new();
    for (i, node) in description.nodes.iter().enumerate() {
        let name = node.name();
        if name == INPUT || index.insert(name, i).is_some() {
            return Err(NetworkError::Duplicate {
                network: description.name.as_str().into(),
                what: "node",
                name: name.to_owned(),
            });
        }
    }
    Ok(index)
}

/// The nodes in an order where each comes after what it reads, or the nodes left unsorted (all on
/// or behind a cycle).
fn topological_order(reads: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut waiting: Vec<usize> = reads.iter().map(Vec::len).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); reads.len()];
    for (i, inputs) in reads.iter().enumerate() {
        for &j in inputs {
            readers[j].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..reads.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(reads.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &r in &readers[i] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.insert(r);
            }
        }
    }
    if order.len() == reads.len() {
        Ok(order)
    } else {
        Err((0..reads.len()).filter(|&i| waiting[i] > 0).collect())
    }
}

/// One cycle among `stuck` (nodes that never became ready), in reading order: walk inputs that are
/// themselves stuck until a node repeats.
fn find_cycle(reads: &[Vec<usize>], stuck: &[usize]) -> Vec<usize> {
    let stuck_set: BTreeSet<usize> = stuck.iter().copied().collect();
    let Some(&start) = stuck.first() else {
        return Vec::new();
    };
    let mut path = vec![start];
    loop {
        let last = path[path.len() - 1];
        let Some(&next) = reads[last].iter().find(|j| stuck_set.contains(j)) else {
            return path;
        };
        if let Some(at) = path.iter().position(|&p| p == next) {
            let mut cycle = path.split_off(at);
            // the walk follows inputs backwards: turn it into the data's direction, starting at the
            // node written first
            cycle.reverse();
            if let Some(first) = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| **n)
                .map(|(i, _)| i)
            {
                cycle.rotate_left(first);
            }
            return cycle;
        }
        path.push(next);
    }
}
