"""`xpress-fast view`: the neuroglancer viewer of the pipeline's outputs, checked over real HTTP.

The server runs in the test process (127.0.0.1, a free port). Everything is fetched as the
neuroglancer client fetches it: the page ``/v/<viewer>/``, the viewer state from the event stream
``/events/<viewer>`` (server-sent events: the client's only source of the state), a volume's
``/neuroglancer/info/<key>`` and its chunks ``/neuroglancer/npz/<key>/<scale>/<start>/<end>``
(the ``npz`` encoding LocalVolume announces), the skeletons' ``/neuroglancer/skeletoninfo/<key>``
and ``/neuroglancer/skeleton/<key>/<id>``, a segment's mesh ``/neuroglancer/mesh/<key>/<id>``.
"""
from __future__ import annotations

import io as _io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

if sys.version_info < (3, 10):  # pragma: no cover - neuroglancer needs Python >= 3.10
    pytest.skip("neuroglancer needs Python >= 3.10", allow_module_level=True)

import neuroglancer  # noqa: E402  (in the [test] extra: a missing one is an error, not a skip)

import xpress_fast  # noqa: E402
from xpress_fast import io  # noqa: E402
from xpress_fast.cli import main  # noqa: E402
from xpress_fast.pipeline import find_outputs, segment_volume, view_outputs  # noqa: E402
from xpress_fast.pipeline.view import MESH_MAX_VOXELS  # noqa: E402
from xpress_fast.skeletons import Skeletons, save_skeletons  # noqa: E402

PYTHON_DIR = Path(xpress_fast.__file__).resolve().parents[1]
TIMEOUT = 20  # seconds for any one HTTP request or process step
VOXEL_SIZE = (40.0, 36.0, 33.0)  # z, y, x: all different, so a swapped axis shows
OFFSET = (80.0, 0.0, 99.0)  # 2, 0 and 3 voxels


def _env():
    return {**os.environ, "PYTHONPATH": str(PYTHON_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _affs_from_labels(labels, seed=0, noise=0.3):
    """Noisy nearest-neighbour affinities (channels -z, -y, -x) as uint8, as the demo stores them."""
    a = np.zeros((3,) + labels.shape, np.float32)
    a[0, 1:] = (labels[1:] == labels[:-1]) & (labels[1:] > 0)
    a[1, :, 1:] = (labels[:, 1:] == labels[:, :-1]) & (labels[:, 1:] > 0)
    a[2, :, :, 1:] = (labels[:, :, 1:] == labels[:, :, :-1]) & (labels[:, :, 1:] > 0)
    rng = np.random.default_rng(seed)
    a = np.clip(a * (1 - noise) + rng.random(a.shape, dtype=np.float32) * noise, 0, 1)
    return (a * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """A directory laid out as `xpress-fast demo` lays it out, made without training a network."""
    from xpress_fast.synthetic import make_volume

    d = tmp_path_factory.mktemp("view")
    vol = make_volume((24, 28, 32), voxel_size=VOXEL_SIZE, offset=OFFSET, seed=2)
    geo = dict(voxel_size=VOXEL_SIZE, offset=OFFSET)
    data = d / "data.zarr"
    io.write_volume(data, "raw", vol.raw, **geo)
    io.write_volume(data, "labels", vol.labels, **geo)
    affs = _affs_from_labels(vol.labels)
    affs[0, 12] = 0  # the axons (along z) cut at z = 12: split errors
    affs[:, 4:8, 8:20, 8:24] = 255  # a box that joins the axons through it: a merge error
    io.write_volume(data, "affinities", affs, **geo)
    save_skeletons(vol.skeletons, d / "skeletons.npz")
    segment_volume(data, "affinities", d / "segmentation.zarr", thresholds=[0.3, 0.7], block_shape=(16, 16, 16),
                   context=(4, 4, 4), watershed_options={"min_seed_distance": 4})
    (d / "summary.json").write_text(json.dumps({"best": {"threshold": 0.7}}))
    return {"dir": d, "vol": vol}


@pytest.fixture
def server():
    """No neuroglancer server before the test, none left after it."""
    neuroglancer.stop()
    yield
    neuroglancer.stop()


def _get(url: str) -> tuple:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
        return r.status, r.headers.get("Content-type"), r.read()


def _base_and_token(viewer_url: str) -> tuple:
    base, rest = viewer_url.split("/v/", 1)
    return base, rest.strip("/")


def _state(viewer_url: str) -> dict:
    """The viewer state as the client receives it: the first 's' event of /events/<viewer>."""
    base, token = _base_and_token(viewer_url)
    with urllib.request.urlopen(f"{base}/events/{token}?c=pytest&gc=&gs=", timeout=TIMEOUT) as r:
        assert r.headers.get("Content-type") == "text/event-stream"
        for _ in range(100):
            line = r.readline()
            if line.startswith(b"data: "):
                msg = json.loads(line[len(b"data: "):])
                if msg["k"] == "s":
                    return msg["s"]
    raise AssertionError("the event stream sent no viewer state")


def _key(layer: dict) -> str:
    src = layer["source"]
    url = (src[0] if isinstance(src, list) else src)
    url = url["url"] if isinstance(url, dict) else url
    assert url.startswith("python://"), url
    return url.split("/", 3)[3]  # python://volume/<key> or python://skeleton/<key>


def _chunk(viewer_url: str, layer: dict, start, end, scale=None) -> np.ndarray:
    base, _ = _base_and_token(viewer_url)
    scale = scale or (1,) * len(start)
    fmt = ",".join
    status, ctype, body = _get(f"{base}/neuroglancer/npz/{_key(layer)}/{fmt(map(str, scale))}/"
                               f"{fmt(map(str, start))}/{fmt(map(str, end))}")
    assert status == 200 and ctype == "application/octet-stream"
    return np.load(_io.BytesIO(zlib.decompress(body)))


def _info(viewer_url: str, layer: dict, kind: str = "info") -> dict:
    base, _ = _base_and_token(viewer_url)
    return json.loads(_get(f"{base}/neuroglancer/{kind}/{_key(layer)}")[2])


def test_state_has_every_layer_with_its_voxel_size(outputs, server):
    viewer = view_outputs(outputs["dir"])
    url = viewer.get_viewer_url()
    assert url.startswith("http://127.0.0.1:")
    state = _state(url)
    layers = {layer["name"]: layer for layer in state["layers"]}
    # the demo's best threshold (summary.json) is the segmentation shown
    assert list(layers) == ["raw", "affinities", "fragments", "segmentation_0.7", "skeletons", "splits_0.7",
                            "merges_0.7"]
    assert [layers[n]["type"] for n in layers] == ["image", "image", "segmentation", "segmentation", "segmentation",
                                                  "annotation", "annotation"]
    assert layers["fragments"]["visible"] is False and layers["affinities"]["visible"] is False
    assert "visible" not in layers["segmentation_0.7"]  # visible is the default
    assert "getDataValue(2)" in layers["affinities"]["shader"]
    assert layers["skeletons"]["segmentDefaultColor"] == "#ffffff"  # not the colour of segment k
    # the display in voxels of the segmentation (x, y, z), centred on the volume
    assert state["dimensions"] == {"x": [33e-9, "m"], "y": [36e-9, "m"], "z": [40e-9, "m"]}
    assert state["position"] == pytest.approx([3 + 16, 0 + 14, 2 + 12])  # x, y, z voxels: offset + shape / 2
    for name, shape, dtype in (("raw", [24, 28, 32], "uint8"), ("fragments", [24, 28, 32], "uint32"),
                               ("segmentation_0.7", [24, 28, 32], "uint32")):
        info = _info(url, layers[name])
        assert info["coordinateSpace"] == {"z": [40e-9, "m"], "y": [36e-9, "m"], "x": [33e-9, "m"]}
        assert info["shape"] == shape and info["dataType"] == dtype
        assert [int(v) for v in info["voxelOffset"]] == [2, 0, 3]
    assert info["volumeType"] == "segmentation"
    affs = _info(url, layers["affinities"])
    assert affs["coordinateSpace"]["c^"] == [1, ""] and affs["shape"] == [3, 24, 28, 32]
    # annotations and skeletons are in nm, z y x
    nm = {"z": [1e-9, "m"], "y": [1e-9, "m"], "x": [1e-9, "m"]}
    assert layers["splits_0.7"]["source"][0]["transform"]["outputDimensions"] == nm
    assert _info(url, layers["skeletons"], "skeletoninfo")["coordinateSpace"] == nm


def test_chunks_decode_to_the_source_arrays(outputs, server):
    viewer = view_outputs(outputs["dir"], thresholds=[0.3, 0.7])  # served while referenced
    url = viewer.get_viewer_url()
    layers = {layer["name"]: layer for layer in _state(url)["layers"]}
    data = io.open_volume(outputs["dir"] / "data.zarr", "raw").data
    seg = io.open_volume(outputs["dir"] / "segmentation.zarr", "segmentation_0.3").data
    affs = io.open_volume(outputs["dir"] / "data.zarr", "affinities").data
    got = _chunk(url, layers["raw"], (8, 4, 16), (24, 20, 32))
    assert got.dtype == np.uint8 and np.array_equal(got, data[8:24, 4:20, 16:32])
    got = _chunk(url, layers["segmentation_0.3"], (0, 0, 0), (16, 16, 16))
    assert got.dtype == np.uint32 and np.array_equal(got, seg[:16, :16, :16]) and len(np.unique(got)) > 1
    # a downsampled chunk of a segmentation is strided (ids are never averaged)
    got = _chunk(url, layers["segmentation_0.3"], (0, 0, 0), (12, 14, 16), scale=(2, 2, 2))
    assert np.array_equal(got, seg[::2, ::2, ::2])
    got = _chunk(url, layers["affinities"], (0, 0, 0, 0), (3, 8, 8, 8))
    assert np.array_equal(got, affs[:, :8, :8, :8])
    assert not np.array_equal(got, np.zeros_like(got))


def test_client_page_and_its_scripts_are_served(outputs, server):
    viewer = view_outputs(outputs["dir"])  # served while referenced
    url = viewer.get_viewer_url()
    status, ctype, body = _get(url)
    assert status == 200 and ctype == "text/html"
    page = body.decode()
    assert "<title>neuroglancer</title>" in page
    script = page.split('<script defer src="', 1)[1].split('"', 1)[0]
    status, ctype, body = _get(url + script)
    assert status == 200 and ctype == "application/javascript" and len(body) > 1000


def test_skeletons_are_served_in_nm(outputs, server):
    viewer = view_outputs(outputs["dir"])  # served while referenced
    url = viewer.get_viewer_url()
    layers = {layer["name"]: layer for layer in _state(url)["layers"]}
    sk = outputs["vol"].skeletons
    comp = sk.component_ids()
    assert [int(s) for s in layers["skeletons"]["segments"]] == list(range(1, sk.n_skeletons + 1))
    base, _ = _base_and_token(url)
    for k in (0, sk.n_skeletons - 1):
        body = _get(f"{base}/neuroglancer/skeleton/{_key(layers['skeletons'])}/{k + 1}")[2]
        n_vertices, n_edges = struct.unpack("<II", body[:8])
        nodes = np.flatnonzero(comp == k)
        assert n_vertices == nodes.size and len(body) == 8 + 12 * n_vertices + 8 * n_edges
        vertices = np.frombuffer(body[8:8 + 12 * n_vertices], "<f4").reshape(-1, 3)
        assert np.allclose(vertices, sk.positions[nodes])
        edges = np.frombuffer(body[8 + 12 * n_vertices:], "<u4").reshape(-1, 2)
        want = {tuple(sorted(e)) for e in sk.edges.tolist() if comp[e[0]] == k}
        assert {tuple(sorted(nodes[e].tolist())) for e in edges} == want
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(f"{base}/neuroglancer/skeleton/{_key(layers['skeletons'])}/{sk.n_skeletons + 1}")


def test_meshes_of_a_small_segmentation(outputs, server):
    viewer = view_outputs(outputs["dir"])  # served while referenced
    url = viewer.get_viewer_url()
    layers = {layer["name"]: layer for layer in _state(url)["layers"]}
    seg = io.read_volume(outputs["dir"] / "segmentation.zarr", "segmentation_0.7").data
    assert seg.size <= MESH_MAX_VOXELS
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    base, _ = _base_and_token(url)
    status, _, body = _get(f"{base}/neuroglancer/mesh/{_key(layers['segmentation_0.7'])}/{ids[np.argmax(counts)]}")
    n_vertices = struct.unpack("<I", body[:4])[0]
    assert status == 200 and n_vertices > 0 and (len(body) - 4 - 12 * n_vertices) % 12 == 0


def test_annotations_are_the_split_and_merge_locations(outputs, server):
    viewer = view_outputs(outputs["dir"])
    state = _state(viewer.get_viewer_url())
    layers = {layer["name"]: layer for layer in state["layers"]}
    seg = io.read_volume(outputs["dir"] / "segmentation.zarr", "segmentation_0.7").data
    scores = xpress_fast.xpress_scores(seg, outputs["vol"].skeletons, voxel_size=VOXEL_SIZE, offset=OFFSET)
    splits = scores.split_locations
    points = np.array([a["point"] for a in layers["splits_0.7"]["annotations"]]).reshape(-1, 3)
    assert len(points) == len(splits["node_ids"]) > 0
    assert np.allclose(points, splits["positions"].mean(axis=1), atol=1e-3)
    merges = scores.merge_locations
    lines = layers["merges_0.7"]["annotations"]
    assert len(lines) == len(merges["node_ids"]) > 0
    for line, pair, label in zip(lines, merges["positions"], merges["label"]):
        assert np.allclose([line["pointA"], line["pointB"]], pair, atol=1e-3)
        assert line["segments"] == [[str(label)]] and line["description"].startswith(f"merge: segment {label} ")
    assert layers["splits_0.7"]["linkedSegmentationLayer"] == {"segments": "segmentation_0.7"}


@pytest.fixture(scope="module")
def hand_case(tmp_path_factory):
    """A 'segment' output by hand, (z, y, x) = (4, 8, 20) voxels of 10 nm. Labels 1 | 2 split x at
    voxel 10 for y < 2; label 3 fills y >= 4. Skeleton A runs along x at y = 1.5 voxels through
    labels 1 and 2; skeletons B (y = 5.5) and C (y = 7.5) both lie in label 3."""
    d = tmp_path_factory.mktemp("hand")
    seg = np.zeros((4, 8, 20), np.uint64)
    seg[:, :2, :10], seg[:, :2, 10:], seg[:, 4:] = 1, 2, 3
    out = d / "out.zarr"
    for name in ("fragments", "segmentation_0.5"):
        io.write_volume(out, name, seg, voxel_size=(10, 10, 10))
    positions = [(15, 15, 25), (15, 15, 65), (15, 15, 125), (15, 15, 165),  # A
                 (15, 55, 25), (15, 55, 105),  # B
                 (15, 75, 45), (15, 75, 165)]  # C
    sk = Skeletons(np.array(positions, float), np.array([[0, 1], [1, 2], [2, 3], [4, 5], [6, 7]]),
                   node_ids=np.arange(100, 108))
    save_skeletons(sk, d / "sk.npz", fmt="arrays")
    return {"out": out, "skeletons": d / "sk.npz"}


def test_hand_checked_split_and_merge_sites(hand_case, server):
    outputs = find_outputs(hand_case["out"])
    assert outputs.fragments == "fragments" and list(outputs.segmentations) == [0.5]
    assert outputs.raw is None and outputs.affinities is None and outputs.skeletons is None
    viewer = view_outputs(hand_case["out"], skeletons=hand_case["skeletons"])
    state = _state(viewer.get_viewer_url())
    layers = {layer["name"]: layer for layer in state["layers"]}
    assert list(layers) == ["fragments", "segmentation_0.5", "skeletons", "splits_0.5", "merges_0.5"]
    (split,) = layers["splits_0.5"]["annotations"]
    assert split["point"] == [15, 15, 95]  # the middle of edge 101-102, nm z y x
    assert split["segments"] == [["1", "2"]]
    assert split["description"] == "split: skeleton 1, nodes 101-102, segments 1 | 2"
    (merge,) = layers["merges_0.5"]["annotations"]
    assert (merge["pointA"], merge["pointB"]) == ([15, 55, 25], [15, 75, 45])  # B's and C's closest nodes
    assert merge["segments"] == [["3"]]
    assert merge["description"] == "merge: segment 3 holds skeletons 2 and 3 (nodes 104, 106, 28 nm apart)"


def test_a_segment_output_finds_its_affinities_and_raw(outputs):
    found = find_outputs(outputs["dir"] / "segmentation.zarr")
    data = (outputs["dir"] / "data.zarr").resolve()
    assert found.affinities == (data, "affinities") and found.raw == (data, "raw")
    assert found.fragments == "fragments" and list(found.segmentations) == [0.3, 0.7]
    assert found.skeletons is None and found.best_threshold is None
    demo = find_outputs(outputs["dir"])
    assert demo.skeletons == outputs["dir"] / "skeletons.npz" and demo.best_threshold == 0.7


def test_bad_input(outputs, hand_case, tmp_path, server):
    with pytest.raises(ValueError, match=r"directory must be a pipeline output .* holds neither"):
        view_outputs(tmp_path)
    with pytest.raises(FileNotFoundError, match="directory not found"):
        view_outputs(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"thresholds: no segmentation at 0.5 .*; available: 0.3, 0.7$"):
        view_outputs(outputs["dir"], thresholds=[0.3, 0.5])
    with pytest.raises(TypeError, match="thresholds must be numbers; got 'x'"):
        view_outputs(outputs["dir"], thresholds=["x"])
    with pytest.raises(FileNotFoundError, match="skeletons file not found"):
        view_outputs(outputs["dir"], skeletons=tmp_path / "none.npz")
    with pytest.raises(ValueError, match=r"port must be an integer in \[0, 65535\]"):
        view_outputs(outputs["dir"], port=70000)
    with pytest.raises(ValueError, match="bind_address: cannot resolve 'no-such-host.invalid'"):
        view_outputs(outputs["dir"], bind_address="no-such-host.invalid")
    with pytest.raises(TypeError, match="raw must be"):
        view_outputs(outputs["dir"], raw="raw.zarr")
    off = tmp_path / "off.zarr"
    io.write_volume(off, "fragments", np.ones((4, 4, 4), np.uint32), voxel_size=(10, 10, 10), offset=(5, 0, 0))
    with pytest.raises(ValueError, match=r"fragments: its offset \[5.0, 0.0, 0.0\] nm must be a whole number"):
        view_outputs(off)
    with pytest.raises(ValueError, match="thresholds must hold at least one threshold"):
        view_outputs(outputs["dir"], thresholds=[])
    io.write_volume(off, "segmentation_0.5", np.ones((4, 4, 5), np.uint32), voxel_size=(10, 10, 10), offset=(5, 0, 0))
    with pytest.raises(ValueError, match=r"segmentation_0.5 has shape \(4, 4, 5\) but fragments has shape"):
        view_outputs(off)
    assert not neuroglancer.server.is_server_running()  # bad input is refused before the server starts


def test_port_in_use_and_a_server_already_running(outputs, server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"port: cannot serve on 127.0.0.1:{port}"):
            view_outputs(outputs["dir"], port=port)
    viewer = view_outputs(outputs["dir"])
    port = int(viewer.get_viewer_url().split(":")[2].split("/")[0])
    again = view_outputs(outputs["dir"], port=port)  # the same server: fine
    assert _get(again.get_viewer_url())[0] == 200 and again.get_viewer_url() != viewer.get_viewer_url()
    with pytest.raises(ValueError, match="bind_address/port: neuroglancer's server already runs at"):
        view_outputs(outputs["dir"], bind_address="0.0.0.0")


def test_cli_errors_are_one_line(outputs, tmp_path, capsys):
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpress-fast view: error: directory must be a pipeline output") and err.count("\n") == 1
    assert main(["view", str(outputs["dir"]), "--threshold", "0.5"]) == 2
    assert "available: 0.3, 0.7" in capsys.readouterr().err
    assert not neuroglancer.server.is_server_running()


def test_missing_neuroglancer_names_the_extra(outputs):
    child = ("import sys; sys.modules['neuroglancer'] = None; from xpress_fast.cli import main; "
             f"sys.exit(main(['view', {str(outputs['dir'])!r}]))")
    res = subprocess.run([sys.executable, "-c", child], env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr == 'xpress-fast view: error: the viewer needs neuroglancer: pip install "xpress-fast[view]"\n'


def test_import_stays_free_of_neuroglancer():
    child = ("import sys, xpress_fast, xpress_fast.pipeline, xpress_fast.pipeline.view, xpress_fast.cli; "
             "print('neuroglancer' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", child], env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr


def _first_line(stream, timeout: float) -> str:
    got = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        raise AssertionError(f"no line within {timeout} s")
    return got[0]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The real `xpress-fast demo --quick` output (about 20 s on two cores)."""
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("demo") / "demo"
    res = subprocess.run([sys.executable, "-m", "xpress_fast", "demo", "--quick", "--out", str(d), "-q"],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return d


def test_cli_view_serves_the_demo_until_ctrl_c(demo_dir):
    proc = subprocess.Popen([sys.executable, "-m", "xpress_fast", "view", str(demo_dir), "--port", "0"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = _first_line(proc.stdout, 60).strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        served = _first_line(proc.stdout, TIMEOUT)
        assert served.startswith("serving 7 layers (raw, affinities, fragments, segmentation_")
        status, ctype, _ = _get(url)
        assert status == 200 and ctype == "text/html"
        state = _state(url)
        best = json.loads((demo_dir / "summary.json").read_text())["best"]["threshold"]
        names = [layer["name"] for layer in state["layers"]]
        assert names == ["raw", "affinities", "fragments", f"segmentation_{best:g}", "skeletons",
                         f"splits_{best:g}", f"merges_{best:g}"]
        assert state["dimensions"] == {"x": [33e-9, "m"], "y": [33e-9, "m"], "z": [33e-9, "m"]}
        layer = state["layers"][names.index(f"segmentation_{best:g}")]
        seg = io.open_volume(demo_dir / "segmentation.zarr", f"segmentation_{best:g}").data
        assert np.array_equal(_chunk(url, layer, (0, 0, 0), (32, 32, 32)), seg[...])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()
