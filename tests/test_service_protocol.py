"""pysaliency's scanpath-model protocol (``/type``, ``/conditional_log_density``) over real HTTP.

The client here builds each request byte for byte as pysaliency's ``HTTPScanpathModel`` does
through requests/urllib3: a PNG of the stimulus array (``Image.fromarray(...).save(format='png')``),
a multipart body with the form field ``json_data`` first (no Content-Type) and then the file field
``stimulus`` (file name ``stimulus``, no Content-Type), and it reads the answer as pysaliency does
(``np.array(json['log_density'])``, float64).
"""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub.model import DeepGaze
from deepgaze_hub.model.config import BackboneConfig, DeepGazeConfig, TrainingScale
from deepgaze_hub.service import BackgroundServer, ServiceSettings, create_app
from deepgaze_hub.service.multipart import FormPart, header_parameters, parse_form
from deepgaze_hub.service.protocol import MAX_JSON_DATA_BYTES, encode_log_density, read_history
from deepgaze_hub.service.errors import RequestRefused
from deepgaze_hub.io.scale import Scaling

from test_service_api import call, decode_npy, png_header, post_image

TOKEN = "protocol-t0ken"
SETTINGS = ServiceSettings(max_upload_bytes=400_000, max_pixels=1_000_000, max_history=50)


# -- the client, as pysaliency builds requests -------------------------------------------------
def stimulus_png(stimulus: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(stimulus).save(buffer, format="png")
    return buffer.getvalue()


def multipart(fields: list[tuple[str, bytes, str | None]], boundary: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) as urllib3's encode_multipart_formdata writes them: (name, data, filename)."""
    boundary = boundary or base64.b16encode(os.urandom(16)).decode("ascii").lower()
    body = io.BytesIO()
    for name, data, filename in fields:
        body.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body.write(f"Content-Disposition: {disposition}\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def history_json(x=(), y=(), t=(), attributes=None) -> bytes:
    return json.dumps({"x_hist": list(x), "y_hist": list(y), "t_hist": list(t), "attributes": attributes or {}}).encode()


def post_form(url: str, fields, headers: dict | None = None, content_type: str | None = None):
    body, form_type = multipart(fields)
    return call(url, "POST", "/conditional_log_density", body, {"Content-Type": content_type or form_type, **(headers or {})})


def conditional_log_density(url: str, stimulus: np.ndarray, json_data: bytes, headers: dict | None = None) -> np.ndarray:
    reply = post_form(url, [("json_data", json_data, None), ("stimulus", stimulus_png(stimulus), "stimulus")], headers)
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/json"
    return np.array(json.loads(reply.body)["log_density"])


def colour_stimulus(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stimulus = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    stimulus[: height // 2, : width // 3] = 255  # structure, so that densities differ between images
    return stimulus


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model() -> DeepGaze:
    """A random SqueezeNet model whose working size is 160 pixels on the long side."""
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    model = DeepGaze(DeepGazeConfig(backbone=backbone, training_scale=TrainingScale(long_side=160)))
    with torch.no_grad():
        for name, parameter in model.readout.named_parameters():
            if name.endswith("weight"):
                parameter.mul_(4.0)
    return model.eval()


@pytest.fixture(scope="module")
def service(model):
    with BackgroundServer(create_app(model, SETTINGS, name="tiny")) as url:
        yield url


# -- answers -----------------------------------------------------------------------------------
def test_type_is_what_pysaliency_checks(service):
    reply = call(service, "GET", "/type")
    assert reply.status == 200 and reply.json() == {"type": "ScanpathModel", "version": "v1.0.0"}
    assert call(service, "HEAD", "/type").status == 200


@pytest.mark.parametrize("kind", ["colour", "grayscale"])
def test_the_answer_is_the_models_prediction_at_the_stimulus_size(service, model, kind):
    stimulus = colour_stimulus(77, 53, seed=1)  # odd size
    if kind == "grayscale":
        stimulus = np.asarray(Image.fromarray(stimulus).convert("L"))  # (H, W): pysaliency sends an L PNG
    log_density = conditional_log_density(service, stimulus, history_json([10.5, 40], [3, 20.25], [0.1, 0.4]))
    assert log_density.dtype == np.float64 and log_density.shape == stimulus.shape[:2]
    expected = model.predict(stimulus).numpy()
    np.testing.assert_allclose(log_density, expected, rtol=0, atol=2e-4)  # batching noise only
    np.testing.assert_allclose(log_density, model.predict(stimulus_png(stimulus)).numpy(), rtol=0, atol=2e-4)
    assert abs(np.exp(log_density).sum() - 1.0) < 1e-4
    # the same float32 values as /v1/predict's .npy, exactly: the JSON loses nothing
    npy = decode_npy(post_image(service, stimulus_png(stimulus), "output=npy").body)
    assert np.array_equal(log_density.astype(np.float32), npy)


def test_the_history_is_checked_and_ignored_by_a_static_model(service):
    stimulus = colour_stimulus(64, 48, seed=2)
    empty = conditional_log_density(service, stimulus, history_json())
    given = conditional_log_density(service, stimulus, history_json([1, 2, 3], [4, 5, 6], [0, 0.2, 0.5], {"subject": 3}))
    unknown = conditional_log_density(service, stimulus, b'{"x_hist": [1, null], "y_hist": [NaN, 2], "t_hist": [0, 1]}')
    assert np.array_equal(empty, given) and np.array_equal(empty, unknown)


def test_a_large_stimulus_is_predicted_at_the_working_size_and_answered_at_its_own(service, model):
    stimulus = colour_stimulus(321, 199, seed=3)  # long side 321 > 160: predicted at 160x99
    log_density = conditional_log_density(service, stimulus, history_json())
    assert log_density.shape == (199, 321)
    np.testing.assert_allclose(log_density, model.predict(stimulus).numpy(), rtol=0, atol=2e-4)


def test_floats_round_trip_float32_exactly():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((37, 29)) * np.float32(10.0) ** rng.integers(-30, 30, (37, 29))).astype(np.float32)
    values[0, :4] = [np.float32(-0.1), np.finfo(np.float32).tiny, -np.finfo(np.float32).max, 0.0]
    scaling = Scaling(original=(37, 29), working=(37, 29), factor=1.0, reason="as is")
    decoded = np.array(json.loads(encode_log_density(torch.from_numpy(values), scaling))["log_density"])
    assert decoded.shape == (37, 29) and np.array_equal(decoded.astype(np.float32), values)
    with pytest.raises(RuntimeError, match="not finite"):
        encode_log_density(torch.full((2, 2), -float("inf")), Scaling((2, 2), (2, 2), 1.0, "as is"))


# -- refusals: 4xx JSON, never 500, and the service goes on ------------------------------------
STIMULUS = stimulus_png(colour_stimulus(64, 48))
GOOD = history_json([1], [2], [3])

REFUSED = {
    "no stimulus": ([("json_data", GOOD, None)], 400, "missing_field"),
    "empty stimulus": ([("json_data", GOOD, None), ("stimulus", b"", "stimulus")], 400, "missing_field"),
    "no json_data": ([("stimulus", STIMULUS, "stimulus")], 400, "missing_field"),
    "json_data not json": ([("json_data", b"{x_hist: [1]", None), ("stimulus", STIMULUS, "s")], 400, "malformed_json_data"),
    "json_data not utf-8": ([("json_data", b"\xff\xfe", None), ("stimulus", STIMULUS, "s")], 400, "malformed_json_data"),
    "infinity": ([("json_data", b'{"x_hist": [Infinity], "y_hist": [1], "t_hist": [1]}', None), ("stimulus", STIMULUS, "s")],
                 400, "malformed_json_data"),
    "deeply nested": ([("json_data", b"[" * 100_000 + b"]" * 100_000, None), ("stimulus", STIMULUS, "s")],
                      400, "malformed_json_data"),
    "json_data a list": ([("json_data", b"[1, 2]", None), ("stimulus", STIMULUS, "s")], 422, "invalid_json_data"),
    "missing x_hist": ([("json_data", b'{"y_hist": [], "t_hist": []}', None), ("stimulus", STIMULUS, "s")],
                       422, "invalid_json_data"),
    "string in x_hist": ([("json_data", history_json(["1"], [2], [3]), None), ("stimulus", STIMULUS, "s")],
                         422, "invalid_json_data"),
    "bool in y_hist": ([("json_data", history_json([1], [True], [3]), None), ("stimulus", STIMULUS, "s")],
                       422, "invalid_json_data"),
    "nested list": ([("json_data", history_json([[1]], [2], [3]), None), ("stimulus", STIMULUS, "s")],
                    422, "invalid_json_data"),
    "unequal lengths": ([("json_data", history_json([1, 2], [2], [3]), None), ("stimulus", STIMULUS, "s")],
                        422, "invalid_json_data"),
    "unknown key": ([("json_data", b'{"x_hist": [], "y_hist": [], "t_hist": [], "extra": 1}', None),
                     ("stimulus", STIMULUS, "s")], 422, "invalid_json_data"),
    "attributes not a mapping": ([("json_data", history_json(attributes=[1]), None), ("stimulus", STIMULUS, "s")],
                                 422, "invalid_json_data"),
    "history too long": ([("json_data", history_json([1] * 51, [1] * 51, [1] * 51), None), ("stimulus", STIMULUS, "s")],
                         422, "invalid_json_data"),
    "json_data too large": ([("json_data", b" " * (2**20 + 1), None), ("stimulus", STIMULUS, "s")],
                            413, "upload_too_large"),  # the whole body passes max_upload_bytes first
    "field twice": ([("json_data", GOOD, None), ("stimulus", STIMULUS, "s"), ("stimulus", STIMULUS, "s")],
                    400, "malformed_form"),
    "not an image": ([("json_data", GOOD, None), ("stimulus", b"GIF89a but not really" * 4, "s")],
                     415, "unsupported_image_type"),
    "too many pixels": ([("json_data", GOOD, None), ("stimulus", png_header(2000, 2000), "s")], 413, "too_many_pixels"),
    "too small": ([("json_data", GOOD, None), ("stimulus", stimulus_png(colour_stimulus(6, 5)), "s")],
                  422, "image_too_small"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_requests_get_a_4xx_json_error(service, case):
    fields, status, code = REFUSED[case]
    reply = post_form(service, fields)
    assert (reply.status, reply.error_code()) == (status, code), reply.body[:300]


def test_malformed_bodies_and_oversized_uploads_are_refused(service):
    raw = call(service, "POST", "/conditional_log_density", STIMULUS, {"Content-Type": "image/png"})
    assert (raw.status, raw.error_code()) == (415, "form_expected") and "json_data" in raw.json()["error"]["message"]
    body, content_type = multipart([("json_data", GOOD, None), ("stimulus", STIMULUS, "s")])
    cases = [
        (body[:-40], content_type, "malformed_form"),  # truncated: no closing boundary
        (body, "multipart/form-data", "malformed_form"),  # no boundary
        (body, "multipart/form-data; boundary=other", "malformed_form"),  # a boundary not in the body
        (body.replace(b"Content-Disposition: form-data; ", b"Content-Disposition: attachment; "), content_type,
         "malformed_form"),
    ]
    for data, kind, code in cases:
        reply = call(service, "POST", "/conditional_log_density", data, {"Content-Type": kind})
        assert (reply.status, reply.error_code()) == (400, code), (kind, reply.body)
    big = stimulus_png(np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8))
    assert len(big) > SETTINGS.max_upload_bytes
    reply = post_form(service, [("json_data", GOOD, None), ("stimulus", big, "stimulus")])
    assert (reply.status, reply.error_code()) == (413, "upload_too_large")
    assert reply.headers["connection"] == "close"
    assert call(service, "GET", "/healthz").json()["in_flight"] == 0
    assert conditional_log_density(service, colour_stimulus(64, 48), GOOD).shape == (48, 64)


# -- token -------------------------------------------------------------------------------------
def test_a_token_guards_the_protocol_and_pysaliency_can_send_it_in_the_url(model):
    with BackgroundServer(create_app(model, ServiceSettings(), name="tiny", token=TOKEN)) as url:
        assert call(url, "GET", "/type").status == 200  # HTTPScanpathModel checks it first: open
        fields = [("json_data", GOOD, None), ("stimulus", STIMULUS, "stimulus")]
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]:
            reply = post_form(url, fields, headers)
            assert (reply.status, reply.error_code()) == (401, "unauthorized")
            assert reply.headers["www-authenticate"].startswith("Bearer")
        # what requests sends for http://token:<token>@host:port (any user name)
        basic = base64.b64encode(f"token:{TOKEN}".encode()).decode()
        for headers in [{"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Basic {basic}"}]:
            assert post_form(url, fields, headers).status == 200
        assert call(url, "GET", "/v1/models", headers={"Authorization": f"Basic {basic}"}).status == 200


# -- the form reader ---------------------------------------------------------------------------
def test_the_form_reader_takes_what_http_clients_send():
    assert header_parameters('form-data; name="a;b"; filename="x \\"y\\".png"') == (
        "form-data",
        {"name": "a;b", "filename": 'x "y".png'},
    )
    body, content_type = multipart([("json_data", b"{}", None), ("stimulus", b"\r\n--\r\nbinary\r\n", "s.png")], "XyZ")
    padded = body.replace(b"--XyZ\r\n", b"--XyZ  \r\n", 1)  # transport padding after a boundary
    for data, kind in [(body, content_type), (padded, 'multipart/form-data; boundary="XyZ"'),
                       (b"preamble\r\n" + body, content_type)]:  # fmt: skip
        form = parse_form(data, kind)
        assert form["json_data"].data == b"{}" and form["json_data"].filename is None
        assert form["stimulus"].data == b"\r\n--\r\nbinary\r\n" and form["stimulus"].filename == "s.png"
    with pytest.raises(RequestRefused) as refused:
        parse_form(multipart([(f"f{i}", b"", None) for i in range(9)], "XyZ")[0], content_type)
    assert (refused.value.status, refused.value.code) == (400, "malformed_form") and "parts" in refused.value.message


def test_the_json_data_field_has_its_own_size_limit():
    with pytest.raises(RequestRefused) as refused:
        read_history(FormPart("json_data", None, None, b" " * (MAX_JSON_DATA_BYTES + 1)), 10)
    assert (refused.value.status, refused.value.code) == (413, "json_data_too_large")
    history = read_history(FormPart("json_data", None, None, b'{"x_hist": [1.5], "y_hist": [2], "t_hist": [null]}'), 1)
    assert (history.x_hist, history.y_hist, history.t_hist, history.attributes) == ([1.5], [2.0], [None], {})
