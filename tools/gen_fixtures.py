#!/usr/bin/env python3
"""Generate the small alexnet_v2 test fixtures under fixtures/ (dev-only; not run in CI).

Writes, for two training seeds, a TF1 Saver-V2 checkpoint of a reduced-width tf-slim-style
``alexnet_v2`` (with ``global_step`` and Momentum slots, seed 02 in two data shards), the same
model variables as ``.safetensors``, and reference outputs of every layer's Conv2D op (before
BiasAdd) for fixed inputs at 224 and 240 px. Also writes tiny malformed-input fixtures under
``fixtures/bad/``.

Usage (from the repository root):
    /root/.cache/lucid-sweep/tf-venv/bin/python tools/gen_fixtures.py [--out fixtures]

Needs tensorflow-cpu 2.21, numpy and safetensors.
"""

import argparse
import glob
import os
import shutil

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

tf1 = tf.compat.v1

# (name, kernel, stride, padding, out_channels, relu, pool_after)
LAYERS = [
    ("conv1", 11, 4, "VALID", 16, True, True),
    ("conv2", 5, 1, "SAME", 24, True, True),
    ("conv3", 3, 1, "SAME", 32, True, False),
    ("conv4", 3, 1, "SAME", 32, True, False),
    ("conv5", 3, 1, "SAME", 24, True, True),
    ("fc6", 5, 1, "VALID", 64, True, False),
    ("fc7", 1, 1, "SAME", 48, True, False),
    ("fc8", 1, 1, "SAME", 10, False, False),
]
# Layers whose variables go to the second CPU device (and so to the second data shard)
# when a seed is written sharded.
SHARD1_LAYERS = {"fc6", "fc7", "fc8"}
SEEDS = {"training_seed_01": (1001, False), "training_seed_02": (2002, True)}
PREFIX_NAME = "model.ckpt_epoch89"


def initial_values(rng):
    """Glorot-uniform HWIO weights and uniform(-0.1, 0.1) biases, float32."""
    values = {}
    in_ch = 3
    for name, k, _s, _p, out_ch, _r, _pool in LAYERS:
        fan_in = k * k * in_ch
        fan_out = k * k * out_ch
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        values[f"alexnet_v2/{name}/weights"] = rng.uniform(
            -limit, limit, size=(k, k, in_ch, out_ch)
        ).astype(np.float32)
        values[f"alexnet_v2/{name}/biases"] = rng.uniform(-0.1, 0.1, size=(out_ch,)).astype(
            np.float32
        )
        in_ch = out_ch
    return values


def build_alexnet(images, init, sharded):
    """Builds alexnet_v2 on `images` (NHWC in [0, 1]).

    Returns ({layer: Conv2D output before BiasAdd}, fc8 logits after BiasAdd).
    """
    convs = {}
    net = (images - 0.5) * 2.0
    for name, k, s, padding, _out, relu, pool_after in LAYERS:
        device = "/cpu:1" if sharded and name in SHARD1_LAYERS else "/cpu:0"
        with tf1.variable_scope(f"alexnet_v2/{name}"):
            with tf.device(device):
                w = tf1.get_variable(
                    "weights", initializer=init[f"alexnet_v2/{name}/weights"]
                )
                b = tf1.get_variable("biases", initializer=init[f"alexnet_v2/{name}/biases"])
            conv = tf.nn.conv2d(net, w, strides=[1, s, s, 1], padding=padding, name="Conv2D")
            convs[name] = conv
            net = tf.nn.bias_add(conv, b, name="BiasAdd")
            if relu:
                net = tf.nn.relu(net, name="Relu")
        if pool_after:
            pool_name = {"conv1": "pool1", "conv2": "pool2", "conv5": "pool5"}[name]
            net = tf.nn.max_pool2d(
                net, ksize=3, strides=2, padding="VALID", name=f"alexnet_v2/{pool_name}"
            )
    return convs, net


def make_inputs(n, size, seed):
    """Deterministic images in [0, 1]: seeded uniform noise plus a smooth colour gradient."""
    rng = np.random.RandomState(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    images = []
    for i in range(n):
        grad = np.stack(
            [xx, yy, 0.5 + 0.5 * np.sin(2 * np.pi * (xx + yy) + i)], axis=-1
        )
        noise = rng.uniform(0.0, 1.0, size=(size, size, 3))
        images.append(np.clip(0.6 * grad + 0.4 * noise, 0.0, 1.0))
    return np.stack(images).astype(np.float32)


def write_seed(out_dir, seed_name, seed, sharded, inputs):
    rng = np.random.RandomState(seed)
    init = initial_values(rng)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        images = tf1.placeholder(tf.float32, [None, None, None, 3], name="input")
        convs, logits = build_alexnet(images, init, sharded)
        with tf.device("/cpu:0"):
            # Explicit device so that a sharded save groups it with the /cpu:0 variables
            # (an unplaced variable would get a shard of its own).
            global_step = tf1.train.get_or_create_global_step()
        loss = tf.reduce_mean(tf.square(logits))
        train_op = tf1.train.MomentumOptimizer(learning_rate=0.01, momentum=0.9).minimize(
            loss, global_step=global_step
        )
        saver = tf1.train.Saver(sharded=sharded)
        model_vars = {
            v.op.name: v
            for v in tf1.global_variables()
            if v.op.name.startswith("alexnet_v2/") and "Momentum" not in v.op.name
        }

        config = tf1.ConfigProto(device_count={"CPU": 2}, allow_soft_placement=False)
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            dummy = make_inputs(1, 224, seed + 7)
            sess.run(train_op, feed_dict={images: dummy})

            ckpt_dir = os.path.join(out_dir, seed_name)
            if os.path.exists(ckpt_dir):
                shutil.rmtree(ckpt_dir)
            os.makedirs(ckpt_dir)
            prefix = os.path.join(ckpt_dir, PREFIX_NAME)
            saved = saver.save(sess, prefix, write_meta_graph=False, write_state=False)
            if saved != prefix:
                # Rename whatever prefix the saver chose to the epoch-89 name.
                for path in glob.glob(saved + ".*"):
                    os.rename(path, prefix + path[len(saved):])
            for extra in glob.glob(os.path.join(ckpt_dir, "*")):
                if not os.path.basename(extra).startswith(PREFIX_NAME + "."):
                    os.remove(extra)

            values = sess.run(model_vars)
            st_dir = os.path.join(out_dir, "safetensors")
            os.makedirs(st_dir, exist_ok=True)
            save_file(
                {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(values.items())},
                os.path.join(st_dir, f"{seed_name}.safetensors"),
            )

            ref_dir = os.path.join(out_dir, "reference")
            os.makedirs(ref_dir, exist_ok=True)
            for size, batch in inputs.items():
                outs = sess.run(convs, feed_dict={images: batch})
                arrays = {"input": batch}
                arrays.update({k: v.astype(np.float32) for k, v in outs.items()})
                np.savez(os.path.join(ref_dir, f"{seed_name}_{size}.npz"), **arrays)
    files = sorted(os.listdir(os.path.join(out_dir, seed_name)))
    print(f"{seed_name}: {files}")


def write_bad(bad_dir):
    """A tiny checkpoint whose only weight is float64 (for the unsupported-dtype test)."""
    target = os.path.join(bad_dir, "float64")
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(target)
    graph = tf.Graph()
    with graph.as_default():
        with tf1.variable_scope("alexnet_v2/conv1"):
            tf1.get_variable(
                "weights", initializer=np.arange(24, dtype=np.float64).reshape(2, 2, 3, 2) / 10
            )
            tf1.get_variable("biases", initializer=np.array([0.5, -0.5], dtype=np.float32))
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(
                sess, os.path.join(target, "model.ckpt"), write_meta_graph=False, write_state=False
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fixtures", help="fixtures root (default: fixtures)")
    args = parser.parse_args()
    tf1.disable_eager_execution()

    out_dir = os.path.join(args.out, "alexnet_small")
    # Same inputs for both seeds: two images at 224 px, one at 240 px (keeps the files small).
    inputs = {224: make_inputs(2, 224, 224), 240: make_inputs(1, 240, 240)}
    for seed_name, (seed, sharded) in SEEDS.items():
        write_seed(out_dir, seed_name, seed, sharded, inputs)
    write_bad(os.path.join(args.out, "bad"))

    total = 0
    for root, _dirs, names in os.walk(args.out):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
    print(f"fixtures total: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
