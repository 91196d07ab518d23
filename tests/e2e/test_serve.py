"""`make serve`: predictions equal `predict`'s for the same file, bad requests get a 4xx JSON error naming
the problem (alone: good requests batched with them still succeed), limits hold, and the server is local-only
unless told otherwise. One server is started for the whole module (a model worker takes a while to start)."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("litserve", reason="the serve extra is not installed: pip install -e '.[serve]'")
requests = pytest.importorskip("requests", reason="the serve extra is not installed: pip install -e '.[serve]'")

from digitcls.inference import load_predictor  # noqa: E402
from digitcls.predict import label_folder  # noqa: E402
from tests.helpers import Served, pixel_bomb, run_module, serving, varied_checkpoint  # noqa: E402

MAX_REQUEST_BYTES = 300_000
SERVING_DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    checkpoint = varied_checkpoint(root / "checkpoints" / "varied.ckpt")
    overrides = [f"max_request_bytes={MAX_REQUEST_BYTES}", "max_batch_size=8", "batch_timeout=0.05",
                 "log_level=warning"]
    with serving(checkpoint, root / "serve.log", overrides) as server:
        yield server


def post_file(url: str, data: bytes, name: str = "digit.png", preprocess: str | None = None) -> requests.Response:
    fields = {"preprocess": preprocess} if preprocess else None
    return requests.post(f"{url}/predict", files={"image": (name, data)}, data=fields, timeout=60)


def test_serve_command_starts_local_only_and_says_so(served: Served) -> None:
    """`make serve` (the README's command) listens on 127.0.0.1 by default and says so when it starts."""
    log = served.log.read_text()
    assert f"listening on {served.url}/ (this machine only)" in log
    assert "local only" in log and "host=0.0.0.0" in log
    assert f"open {served.url}/ in a browser" in log and "Ctrl-C (or kill <pid>) stops the server" in log
    assert requests.get(f"{served.url}/health", timeout=10).text == "ok"


def test_page_is_served_with_a_drawing_canvas(served: Served) -> None:
    page = requests.get(served.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needed in ('<canvas id="pad"', "pointerdown", "pointermove", '"drop"', 'form.append("preprocess", "mnist")'):
        assert needed in page.text


@pytest.mark.parametrize("preprocess", ["none", "mnist"])
def test_answers_equal_predicts_for_the_same_files(served: Served, digit_pngs: Path, preprocess: str) -> None:
    predictions, _ = label_folder(load_predictor(served.model_path), digit_pngs, preprocess=preprocess)
    predictor = load_predictor(served.model_path)
    labels = set()
    for row in predictions.itertuples():
        data = (digit_pngs / row.image_id).read_bytes()
        as_file = post_file(served.url, data, preprocess=preprocess).json()
        as_json = requests.post(f"{served.url}/predict", timeout=60,
                                json={"image": base64.b64encode(data).decode(), "preprocess": preprocess}).json()
        for answer in (as_file, as_json):
            assert answer["label"] == row.label
            assert answer["confidence"] == pytest.approx(row.confidence, abs=1e-4)
            assert [t["label"] for t in answer["top3"]][0] == row.label and len(answer["top3"]) == 3
            ranked = sorted(answer["probabilities"].items(), key=lambda item: -item[1])[:3]
            assert [t["label"] for t in answer["top3"]] == [name for name, _ in ranked]
            assert sorted(answer["probabilities"]) == predictor.class_names
            assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        labels.add(row.label)
    assert len(labels) > 1, "the test model should give different images different labels"


BAD_REQUESTS = {  # name: (request kwargs for requests.post, status, words the error must contain)
    "empty body": ({"data": b"", "headers": {"content-type": "application/json"}}, 400, "body is empty"),
    "empty file": ({"files": {"image": ("x.png", b"")}}, 400, "x.png is empty (0 bytes)"),
    "not an image": ({"files": {"image": ("notes.txt", b"just some text, not pixels")}}, 415,
                     "notes.txt is corrupt or not a supported image"),
    "corrupt png": ({"files": {"image": ("cut.png", pixel_bomb(40, 40)[:40])}}, 415, "cut.png is corrupt"),
    "over the size limit": ({"files": {"image": ("big.png", b"\x89PNG" + bytes(MAX_REQUEST_BYTES))}}, 413,
                            f"max_request_bytes={MAX_REQUEST_BYTES:,}"),
    "pixel bomb": ({"files": {"image": ("bomb.png", pixel_bomb())}}, 413,
                   "bomb.png declares 50000 x 50000 pixels, more than max_image_pixels=40000000"),
    "malformed json": ({"data": b'{"image": ', "headers": {"content-type": "application/json"}}, 400,
                       "not valid JSON"),
    "json without image": ({"json": {"picture": "abc"}}, 400, 'no string field "image"'),
    "bad base64": ({"json": {"image": "not base64!"}}, 400, '"image" is not valid base64'),
    "unknown preprocess": ({"json": {"image": "AAAA", "preprocess": "sharpen"}}, 400,
                           "preprocess: unknown value 'sharpen'; valid: none, mnist"),
    "wrong content type": ({"data": b"\x89PNG", "headers": {"content-type": "image/png"}}, 415,
                           "Content-Type image/png is not supported"),
    "multipart without a file": ({"files": {"preprocess": (None, "mnist")}}, 400, "the multipart body has no file"),
    "two files, none named image": ({"files": [("front", ("a.png", b"1")), ("back", ("b.png", b"2"))]}, 400,
                                    'the multipart body has 2 files (fields "front", "back"); send one file, or '
                                    'name only the one to read "image"'),
    "two files named image": ({"files": [("image", ("a.png", b"1")), ("image", ("b.png", b"2"))]}, 400,
                              'has 2 files (fields "image", "image")'),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_gets_a_4xx_naming_the_problem(served: Served, case: str) -> None:
    kwargs, status, words = BAD_REQUESTS[case]
    response = requests.post(f"{served.url}/predict", timeout=60, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in detail
    assert "Traceback" not in response.text and str(served.model_path.parent) not in response.text
    assert "/tmp" not in response.text and "site-packages" not in response.text


def test_a_lone_file_is_read_under_any_field_name(served: Served, digit_pngs: Path) -> None:
    """`curl -F file=@3.png`: one file part is the image whatever its field is called; among several files,
    the one in field "image" is read (two images the test model labels differently tell which was)."""
    predictions, _ = label_folder(load_predictor(served.model_path), digit_pngs)
    first, second = (predictions.drop_duplicates("label").image_id[:2])
    images = {name: (digit_pngs / name).read_bytes() for name in (first, second)}
    label = {name: post_file(served.url, data).json()["label"] for name, data in images.items()}
    assert label[first] != label[second] and label[first] == predictions.set_index("image_id").label[first]
    for field in ("file", "photo", "upload"):
        answer = requests.post(f"{served.url}/predict", files={field: (first, images[first])}, timeout=60)
        assert answer.status_code == 200 and answer.json()["label"] == label[first], answer.text
    for chosen, other in ((first, second), (second, first)):
        files = [("other", (other, images[other])), ("image", (chosen, images[chosen]))]
        answer = requests.post(f"{served.url}/predict", files=files, timeout=60)
        assert answer.status_code == 200 and answer.json()["label"] == label[chosen], answer.text


def documented_commands(doc: Path) -> list[str]:
    """The command lines of a markdown file's ```bash blocks."""
    blocks = re.findall(r"^```bash\n(.*?)^```", doc.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_documented_curl_command_works(served: Served, digit_pngs: Path, tmp_path: Path) -> None:
    """docs/serving.md's curl line, run as written in a folder holding a generated 3.png; only the port is the
    test server's."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (command,) = [line for line in documented_commands(SERVING_DOC) if line.startswith("curl ")]
    assert command == "curl -F file=@3.png http://127.0.0.1:8000/predict"
    (tmp_path / "3.png").write_bytes((digit_pngs / "1.png").read_bytes())  # digit_pngs draws 0, 3, 5, 7, 9
    argv = shlex.split(command.replace("http://127.0.0.1:8000", served.url))
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(done.stdout)
    expected = post_file(served.url, (tmp_path / "3.png").read_bytes()).json()
    assert sorted(answer) == ["confidence", "label", "probabilities", "top3"] and answer["label"] == expected["label"]
    assert answer["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)


def test_good_requests_batched_with_bad_ones_still_succeed(served: Served, digit_pngs: Path) -> None:
    """Bad and good requests at once, so they meet in the same batches: each bad one fails alone."""
    good = (digit_pngs / "0.png").read_bytes()
    expected = post_file(served.url, good).json()
    bad = [("bomb.png", pixel_bomb()), ("notes.txt", b"text"), ("empty.png", b"")]
    jobs = [("good.png", good) if i % 2 else bad[i // 2 % len(bad)] for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda job: post_file(served.url, job[1], job[0]), jobs))
    for (name, _), response in zip(jobs, responses, strict=True):
        if name == "good.png":
            assert response.status_code == 200, response.text
            assert response.json()["label"] == expected["label"]
        else:
            assert 400 <= response.status_code < 500, response.text
    assert requests.get(f"{served.url}/health", timeout=10).text == "ok"


def test_bad_model_path_is_a_message_without_traceback(tmp_path: Path) -> None:
    done = run_module("digitcls.serve", [f"model_path={tmp_path / 'missing.ckpt'}"], tmp_path, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "model_path" in done.stderr and "missing.ckpt does not exist" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
