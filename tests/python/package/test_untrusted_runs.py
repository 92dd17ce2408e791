"""Run folders as untrusted input: `diffstride.models.from_run` never runs
code a pickle in the folder carries, the files the C++ tool writes for
Python load with plain `torch.load(path, weights_only=True)` (checked
against the data written here and against an opcode allowlist of their
pickles), `from_run` rebuilds waveform runs (resnet1d) whose logits equal
the tool's, and `diffstride.freeze` of a bare layer.

The runs come from conftest.py (image_run, waveform_run)."""
import builtins
import os
import pickle
import pickletools
import re
import shlex
import shutil
import time
import zipfile

import pytest
import torch

import diffstride
from plain_formulation import plain_diffstride


class _System:
    """Unpickling it runs `touch MARKER` through os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class _Exec:
    """Unpickling it runs Python source through builtins.exec."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _torch_zip(payload, path):
    torch.save({"stem.weight": torch.zeros(4, 1, 3, 3), "fc.weight": payload}, path)


def _torch_legacy(payload, path):
    torch.save({"fc.weight": payload}, path, _use_new_zipfile_serialization=False)


def _plain_pickle(payload, path):
    with open(path, "wb") as file:
        pickle.dump({"fc.weight": payload}, file)


WRITERS = {"zip": _torch_zip, "legacy": _torch_legacy, "plain_pickle": _plain_pickle}
PAYLOADS = {"os.system": _System, "builtins.exec": _Exec}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("writer", WRITERS)
def test_from_run_never_runs_the_code_a_state_dict_carries(image_run, tmp_path, writer, payload):
    # Control: the same payload, loaded the unsafe way, does run.
    control_marker = tmp_path / "control_marker"
    WRITERS[writer](PAYLOADS[payload](control_marker), tmp_path / "control.pt")
    try:
        torch.load(tmp_path / "control.pt", weights_only=False)
    except Exception:  # a plain pickle is no torch file, once its code has run
        pass
    assert control_marker.exists(), "the payload is not live: the test would prove nothing"

    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(image_run.run / "config.toml", folder / "config.toml")
    marker = tmp_path / "marker"
    WRITERS[writer](PAYLOADS[payload](marker), folder / "model_state_dict.pt")
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):
        diffstride.models.from_run(folder)
    assert not marker.exists()
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):
        diffstride.models.load_weights(folder / "model_state_dict.pt")
    assert not marker.exists()


def test_from_run_reads_only_the_config_and_the_state_dict(image_run, tmp_path):
    """A run folder whose other .pt files carry code still gives the model,
    and none of that code runs."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("config.toml", "model_state_dict.pt"):
        shutil.copy(image_run.run / name, folder / name)
    marker = tmp_path / "marker"
    for name in ("model.pt", "checkpoint.pt", "logits.pt"):
        _torch_zip(_System(marker), folder / name)
    model = diffstride.models.from_run(folder)
    expected = torch.load(image_run.dump, weights_only=True)
    with torch.no_grad():
        assert torch.allclose(model(expected["images"]), expected["logits"], rtol=0, atol=1e-5)
    assert not marker.exists()


@pytest.mark.parametrize("state", [
    [1, 2],
    torch.zeros(3),
    {"fc.weight": 3},
    {0: torch.zeros(2, 2)},
    {"fc.weight": [torch.zeros(2, 2)]},
    {"stem.weight": torch.zeros(4, 1, 3, 3)},              # no dense layer
    {"stem.weight": torch.zeros(4, 1, 3, 3), "fc.weight": torch.zeros(())},
], ids=["list", "tensor", "number", "int_key", "list_value", "no_fc", "scalar_fc"])
def test_a_state_dict_that_is_no_resnets_dict_of_tensors_is_a_value_error_naming_it(
        image_run, tmp_path, state):
    shutil.copy(image_run.run / "config.toml", tmp_path / "config.toml")
    path = tmp_path / "model_state_dict.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        diffstride.models.from_run(tmp_path)


@pytest.mark.parametrize("change", [
    ("filters = [ 4, 8, 8 ]", "filters = [ 4, 100000000, 8 ]"),
    ("filters = [ 4, 8, 8 ]", "filters = [ 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8 ]"),
    ("layers_per_block = 1", "layers_per_block = 1000000000"),
], ids=["huge_filters", "more_blocks", "more_layers"])
def test_a_config_asking_for_another_network_is_refused_before_it_is_built(
        image_run, tmp_path, change):
    """config.toml is as untrusted as the weights: numbers that do not match
    the weights are refused at once (building first would ask for
    gigabytes, or hours of layers)."""
    for name in ("config.toml", "model_state_dict.pt"):
        shutil.copy(image_run.run / name, tmp_path / name)
    config = (tmp_path / "config.toml").read_text()
    assert change[0] in config, config
    (tmp_path / "config.toml").write_text(config.replace(*change))
    started = time.time()
    with pytest.raises(ValueError, match="do not match the weights"):
        diffstride.models.from_run(tmp_path)
    assert time.time() - started < 5


# The GLOBALs a pickle of plain tensors in plain containers may name, and the
# opcodes that call them: written here, apart from torch's own allowlist.
_ALLOWED_GLOBALS = {"torch._utils _rebuild_tensor_v2", "collections OrderedDict"} | {
    f"torch {kind}Storage" for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int",
                                        "Short", "Char", "Byte", "Bool")}


def _pickle_globals(path):
    """The GLOBAL names of the pickle inside a torch zip file, after
    checking that it imports nothing by STACK_GLOBAL or INST."""
    with zipfile.ZipFile(path) as archive:
        [name] = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        data = archive.read(name)
    names = set()
    for opcode, arg, _ in pickletools.genops(data):
        assert opcode.name not in ("STACK_GLOBAL", "INST", "OBJ"), f"{path}: {opcode.name}"
        if opcode.name == "GLOBAL":
            names.add(arg)
    return names


def _check_safe_pickle(path):
    names = _pickle_globals(path)
    assert names <= _ALLOWED_GLOBALS, f"{path} names {names - _ALLOWED_GLOBALS}"


def test_files_the_tool_writes_load_with_weights_only(image_run):
    state = torch.load(image_run.run / "model_state_dict.pt", weights_only=True)
    assert isinstance(state, dict)
    # The same network built in Python: the default recipe's [model] with
    # the filters and strides of the run, 1 input channel, 10 classes.
    reference = diffstride.models.resnet([4, 8, 8], [1.0, 2.0, 2.0], layers_per_block=1,
                                         in_channels=1, num_classes=10,
                                         pooling="diffstride").state_dict()
    assert sorted(state) == sorted(reference)
    for key, value in reference.items():
        assert state[key].shape == value.shape, key
        assert state[key].dtype == value.dtype, key
    assert state["stem.weight"].shape == (4, 1, 3, 3)
    assert state["fc.weight"].shape == (10, 8)
    assert state["stem_pooling.strides"].shape == (2,)
    _check_safe_pickle(image_run.run / "model_state_dict.pt")

    dump = torch.load(image_run.dump, weights_only=True)
    assert isinstance(dump, dict)
    assert sorted(dump) == ["images", "labels", "logits"]
    assert dump["images"].shape == (24, 1, 12, 12) and dump["images"].dtype == torch.float32
    assert dump["labels"].shape == (24,) and dump["labels"].dtype == torch.int64
    assert dump["logits"].shape == (24, 10) and dump["logits"].dtype == torch.float32
    # The run's normalisation is mean 0, std 1: pixels / 255, in file order.
    assert torch.allclose(dump["images"], image_run.test_pixels.float() / 255, rtol=0, atol=1e-6)
    assert torch.equal(dump["labels"], image_run.test_labels)
    _check_safe_pickle(image_run.dump)


def test_a_waveform_runs_files_load_with_weights_only(waveform_run, audio_folder):
    run = waveform_run("resnet1d_diffstride", *WAVEFORM_RUNS["resnet1d_diffstride"])
    state = torch.load(run.run / "model_state_dict.pt", weights_only=True)
    assert state["stem.weight"].shape == (4, 1, 1, 9)        # 1 x 9 kernels, mono
    assert state["stem_pooling.layer.strides"].shape == (1,)  # DiffStride1d: one stride
    assert state["fc.weight"].shape == (2, 8)
    _check_safe_pickle(run.run / "model_state_dict.pt")
    dump = torch.load(run.dump, weights_only=True)
    examples = len(audio_folder.val)
    assert dump["images"].shape == (examples, 1, 1, audio_folder.clip)
    assert dump["logits"].shape == (examples, len(audio_folder.labels))
    # The val clips as written (16-bit samples / 32768), label by label.
    assert torch.allclose(dump["images"][:, 0, 0].double(), audio_folder.val, rtol=0, atol=1e-6)
    assert torch.equal(dump["labels"], audio_folder.val_labels)
    _check_safe_pickle(run.dump)


RESNET1D = ("model.factory=resnet1d", "model.filters=4,4,8", "model.strides=4,1,4")
WAVEFORM_RUNS = {
    "resnet1d_diffstride": (*RESNET1D, "model.pooling=diffstride"),
    "resnet1d_spectral_2_layers": (*RESNET1D, "model.pooling=spectral",
                                   "model.layers_per_block=2"),
    "resnet1d_spatial": (*RESNET1D, "model.pooling=spatial"),
    "resnet1d_none": (*RESNET1D, "model.pooling=none"),
    "resnet_on_1xL": ("model.factory=resnet", "model.filters=4,8", "model.strides=1x4,1x4",
                      "model.pooling=none"),
}


@pytest.mark.parametrize("name", WAVEFORM_RUNS)
def test_from_run_rebuilds_waveform_runs_with_the_tools_logits(waveform_run, audio_folder, name):
    run = waveform_run(name, *WAVEFORM_RUNS[name])
    dump = torch.load(run.dump, weights_only=True)
    model = diffstride.models.from_run(run.run)
    assert not model.training
    if name.startswith("resnet1d"):
        assert model.spatial_dims == 1
        assert model.stem.kernel_size == (1, 9)
        layers = 2 if name.endswith("2_layers") else 1
        assert len(model.blocks) == 2 * layers
    with torch.no_grad():
        logits = model(dump["images"])
        # The N x C x L form of the same examples gives the same logits.
        if name.startswith("resnet1d"):
            assert torch.equal(model(dump["images"].squeeze(2)), logits)
    assert logits.shape == dump["logits"].shape == (len(dump["labels"]), len(audio_folder.labels))
    assert (logits - dump["logits"]).abs().max() <= 1e-4
    if name == "resnet1d_diffstride":
        # The strides the tool printed, (1, s) per DiffStride1d layer.
        printed = re.search(r"learned strides:(.*)", run.log).group(1)
        strides = [float(w) for w in re.findall(r"\(1\.000, ([0-9.]+)\)", printed)]
        learned = diffstride.current_strides(model)
        assert len(strides) == len(learned) == 2
        for (s,), p in zip(learned, strides):
            assert abs(s - p) <= 5e-4


def test_freezing_a_bare_diffstride_gives_a_frozen_layer_with_its_outputs():
    torch.manual_seed(8)
    layer = diffstride.DiffStride(strides=(2.0, 3.0))
    x = torch.randn(2, 3, 20, 17)
    layer(x)
    layer.eval()
    with torch.no_grad():
        expected = layer(x)
    frozen = diffstride.freeze(layer)
    assert isinstance(frozen, diffstride.FrozenDiffStride)
    assert frozen is not layer and not isinstance(frozen, diffstride.DiffStride)
    assert not any(isinstance(m, diffstride.DiffStride) for m in frozen.modules())
    with torch.no_grad():
        out = frozen(x)
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()
    # Against the plain FFT formulation too, and on another input of that size.
    y = torch.randn(1, 5, 20, 17)
    with torch.no_grad():
        plain = plain_diffstride(y.double(), 2.0, 3.0)
        assert (frozen(y).double() - plain).abs().max() <= 1e-5 * plain.abs().max()
    # The layer itself is left as it was.
    assert layer.current_strides() == [2.0, 3.0]


@pytest.mark.parametrize("make, shape", [(diffstride.DiffStride1d, (1, 2, 30)),
                                         (diffstride.DiffStride3d, (1, 2, 8, 9, 10))],
                         ids=["1d", "3d"])
def test_freezing_a_bare_1d_or_3d_diffstride_is_not_implemented(make, shape):
    layer = make(2.0)
    layer(torch.randn(*shape))
    with pytest.raises(NotImplementedError, match=f"{make.__name__} computes through FFTs"):
        diffstride.freeze(layer)
