"""Probe photographs for lucid-sweep's tests (issue 15): scikit-image's sample photographs that its
own docstrings state are in the public domain or CC0, written as the files of a probe set.

Nothing is downloaded: these images ship inside scikit-image's wheel (its "legacy" datasets), so
the test command builds the set from what the package registry already gave it. Each is written in
the format and colour form a lab's set would hold (JPEG and PNG, colour and greyscale) so the probe
pass's decoding is exercised on real photographs, and ``licences.json`` beside the folder records
where each came from and the sentence of its docstring that licenses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# name in skimage.data: the file it becomes (the suffix chooses the format)
PHOTOS = {
    "astronaut": "astronaut.jpg",
    "chelsea": "chelsea.jpg",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "camera": "camera-grey.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
}

# what a docstring must say for its image to be used
_FREE = re.compile(r"public[ -]domain|\bCC0\b|CC-0|creative commons zero", re.IGNORECASE)


class LicenceError(Exception):
    """A photograph's docstring does not state a public-domain or CC0 licence."""


def licence_sentence(doc: str) -> str | None:
    """The first sentence of ``doc`` stating a public-domain or CC0 licence, or ``None``."""
    text = " ".join(doc.split())
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if _FREE.search(sentence):
            return sentence
    return None


def write(out: Path) -> list[dict]:
    """Writes every photograph of :data:`PHOTOS` into ``out`` and ``licences.json`` beside it;
    returns the licence records. Refuses (writing nothing) if any docstring lacks its licence."""
    import skimage.data
    from PIL import Image

    records = []
    for name, file in PHOTOS.items():
        loader = getattr(skimage.data, name)
        sentence = licence_sentence(loader.__doc__ or "")
        if sentence is None:
            raise LicenceError(f"skimage.data.{name}: its docstring states no public-domain or CC0 licence")
        records.append({"file": file, "source": f"skimage.data.{name}", "licence": sentence})
    out.mkdir(parents=True, exist_ok=True)
    for name, file in PHOTOS.items():
        pixels = np.asarray(getattr(skimage.data, name)())
        image = Image.fromarray(pixels)
        if file.endswith("-grey.png"):
            image = image.convert("L")
        elif image.mode != "RGB" and file.endswith(".jpg"):
            image = image.convert("RGB")
        if file.endswith(".jpg"):
            image.save(out / file, quality=90)
        else:
            image.save(out / file)
    (out.parent / f"{out.name}.licences.json").write_text(json.dumps(records, indent=2) + "\n")
    return records
