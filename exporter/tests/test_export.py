"""The exporter on torchvision models with random weights (no weights can be downloaded here)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from lucid_export import DESCRIPTOR, export, layer_names
from lucid_export.alexnet_v2 import build_small, convert
from lucid_export.cli import main
from lucid_export.models import ExportError, build_model, load_weights

ROOT = Path(__file__).resolve().parents[2]


def test_layer_names_are_torchvisions_fx_names():
    names = layer_names(build_model("torchvision:resnet18"))
    assert "layer3.1.conv2" in names and "layer4" not in names[:3]
    assert names[-1] == "fc"


def test_export_writes_modules_that_compute_their_layer_with_gradients(tmp_path):
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18")
    d = export(model, ["layer1.0.conv1", "layer3", "fc"], tmp_path, name="resnet18", source="test")
    assert [l["name"] for l in d["layers"]] == ["layer1.0.conv1", "layer3", "fc"]
    assert [l["channels"] for l in d["layers"]] == [64, 256, 1000]
    assert d["layers"][0]["min_input_side"] == 1
    assert json.loads((tmp_path / DESCRIPTOR).read_text()) == d
    scripted = torch.jit.load(str(tmp_path / "layer3.pt"))
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = scripted(x)["layer3"]
    assert out.shape == (2, 256, 4, 4)
    with torch.no_grad():
        expected = torch.nn.Sequential(
            model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3
        )(x)
    assert torch.allclose(out, expected, atol=1e-5)
    out[:, 0].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in scripted.parameters())


def test_a_tapped_convolution_is_pre_activation_although_its_relu_is_inplace(tmp_path):
    torch.manual_seed(1)
    model = build_model("torchvision:vgg11_bn")
    export(model, ["features.0"], tmp_path, name="vgg11_bn", source="test")
    out = torch.jit.load(str(tmp_path / "features.0.pt"))(torch.rand(1, 3, 32, 32))["features.0"]
    assert (out < 0).any(), "an inplace ReLU rectified the tapped convolution"


def test_googlenet_exports_with_ceil_mode_pools(tmp_path):
    torch.manual_seed(2)
    d = export(build_model("torchvision:googlenet"), ["inception3a"], tmp_path, name="g", source="t")
    assert d["layers"][0]["channels"] == 256


def test_bad_input_is_refused_naming_the_thing(tmp_path):
    model = build_model("torchvision:resnet18")
    with pytest.raises(ExportError, match="no layer 'layer3.1.conv9'; closest: layer3.1.conv2, layer3.1.conv1"):
        export(model, ["layer3.1.conv9"], tmp_path, name="r", source="t")
    with pytest.raises(ExportError, match="torchvision has no model 'resnet9000'"):
        build_model("torchvision:resnet9000")
    with pytest.raises(ExportError, match="must be torchvision:NAME"):
        build_model("resnet18")


class Payload:
    """Anything that is not a tensor: weights_only loading must refuse to build it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_are_read_without_unpickling_objects(tmp_path):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    with pytest.raises(ExportError, match="not a weights-only state dict"):
        load_weights(build_model("torchvision:resnet18"), bad)
    good = tmp_path / "w.pt"
    model = build_model("torchvision:resnet18")
    torch.save(model.state_dict(), good)
    load_weights(build_model("torchvision:resnet18"), good)
    wrong = tmp_path / "wrong.pt"
    torch.save({"nope": torch.zeros(1)}, wrong)
    with pytest.raises(ExportError, match="does not fit the model"):
        load_weights(build_model("torchvision:resnet18"), wrong)


def test_the_fixture_alexnet_loads_from_converted_safetensors(tmp_path):
    converted = tmp_path / "alexnet.safetensors"
    convert(ROOT / "fixtures/alexnet_small/safetensors/training_seed_01.safetensors", converted)
    model = build_small()
    load_weights(model, converted)
    assert model.conv1.weight.shape == (16, 3, 11, 11)


def test_cli_lists_and_exports(tmp_path, capsys):
    assert main(["list", "--model", "torchvision:resnet18"]) == 0
    assert "layer2.0.downsample.0" in capsys.readouterr().out
    out = tmp_path / "r18"
    assert main(["export", "--model", "torchvision:resnet18", "--layers", "layer1", "--out", str(out)]) == 0
    d = json.loads((out / DESCRIPTOR).read_text())
    assert d["input"]["mean"] == [0.485, 0.456, 0.406]
    assert main(["export", "--model", "torchvision:resnet18", "--layers", "nope", "--out", str(out)]) == 2


def test_the_gabor_filters_point_where_they_say():
    from lucid_export.gabor import ORIENTATIONS, gabor, resnet18_gabor

    def wave_vector(g):
        power = torch.fft.fft2(g, s=(32, 32)).abs() ** 2
        ky, kx = divmod(int(power.argmax()), 32)
        return (ky + 16) % 32 - 16, (kx + 16) % 32 - 16

    # 0°: the wave vector is along x; 90°: along y; 45°: on the diagonal
    ky, kx = wave_vector(gabor(0))
    assert ky == 0 and kx != 0
    ky, kx = wave_vector(gabor(90))
    assert kx == 0 and ky != 0
    ky, kx = wave_vector(gabor(45))
    assert ky == kx != 0
    g0 = gabor(0)
    assert abs(float(g0.sum())) < 1e-5 and abs(float(g0.norm()) - 1) < 1e-5
    model = resnet18_gabor()
    w = model.conv1.weight
    assert float(w[len(ORIENTATIONS):].abs().sum()) == 0.0
    assert torch.allclose(w[1, 0], gabor(45) / 3)


def test_probe_photos_are_free_photographs_in_every_form(tmp_path):
    from PIL import Image

    from lucid_export.probe_photos import PHOTOS, licence_sentence

    out = tmp_path / "photos"
    assert main(["probe-photos", "--out", str(out)]) == 0
    records = json.loads((tmp_path / "photos.licences.json").read_text())
    assert [r["file"] for r in records] == list(PHOTOS.values())
    for record in records:
        assert licence_sentence(record["licence"]) == record["licence"], record
        with Image.open(out / record["file"]) as image:
            assert min(image.size) >= 200, record
            expected = "L" if record["file"].endswith("-grey.png") else "RGB"
            assert image.mode == expected, record
            assert image.format == ("JPEG" if record["file"].endswith(".jpg") else "PNG")


def test_a_photograph_without_a_free_licence_is_refused():
    from lucid_export.probe_photos import licence_sentence

    assert licence_sentence("A photo.\n\n    Notes\n    -----\n    All rights reserved.") is None
    assert licence_sentence("Cat.  This image is in the public domain.  Taken 2012.") == (
        "This image is in the public domain."
    )
    assert licence_sentence("Released under CC0 by the author.") == "Released under CC0 by the author."
