"""DICOM in (issue 20): real files written with pydicom, each against the same pixels sent as PNG, through
the decoder and the handler (the tiny model; the bundled model on the BUSI examples), every refusal with
its code, and no patient data in logs, metrics or responses."""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import (ExplicitVRBigEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                         RLELossless)

from classifier import dicom
from classifier.handler import create_service
from classifier.lambda_context import LocalContext
from classifier.preprocessing import decode_rgb, preprocess, resize_for_model
from classifier.settings import Settings
from bench import dicom_factory as f
from tests.serving.events import multipart_body, predict_json, predict_raw, rest_event

REPO = Path(__file__).resolve().parents[2]
DCM = "application/dicom"

GREY, COLOUR = f.frame(1), f.frame(2, colour=True)
STORED_13 = GREY.astype(np.uint16) * 32  # 0..8160 in 13 bits
#: A window that maps (stored - 1000) back onto GREY exactly: width - 1 = 32 x 255, centred on the range.
WINDOW_13 = (-1000 + 0.5 + 4080, 8161)
TWELVE = (GREY.astype(np.uint32) * 4095 // 255).astype(np.uint16)


def _expected_twelve_bit() -> np.ndarray:  # no window: the stored range 0..4095 onto 0..255
    return np.rint(TWELVE.astype(np.float64) * 255 / 4095).astype(np.uint8)


#: name -> (DICOM bytes builder, the pixels as they should decode, frame to ask for, lossless?)
KINDS = {
    "monochrome2": (lambda: f.dicom(GREY), GREY, None, True),
    "monochrome1-inverted": (lambda: f.dicom(255 - GREY, photometric="MONOCHROME1"), GREY, None, True),
    "rgb": (lambda: f.dicom(COLOUR), COLOUR, None, True),
    "rgb-planar-configuration-1": (lambda: f.dicom(COLOUR, planar=1), COLOUR, None, True),
    "implicit-vr": (lambda: f.dicom(GREY, syntax=ImplicitVRLittleEndian), GREY, None, True),
    "explicit-big-endian-16bit": (lambda: f.dicom(STORED_13, syntax=ExplicitVRBigEndian, stored=13, slope=1,
                                                  intercept=-1000, window=WINDOW_13), GREY, None, True),
    "16bit-rescale-and-window": (lambda: f.dicom(STORED_13, stored=13, slope=1, intercept=-1000,
                                                 window=WINDOW_13), GREY, None, True),
    "16bit-rescale-slope-2": (lambda: f.dicom(STORED_13 // 2, stored=13, slope=2, intercept=-1000,
                                              window=WINDOW_13), GREY, None, True),
    "16bit-signed-rescale-and-window": (lambda: f.dicom((GREY.astype(np.int16) * 32 - 4080), bits=16, stored=14,
                                                        signed=True, slope=1, intercept=-1000 + 4080,
                                                        window=WINDOW_13), GREY, None, True),
    "12bit-no-window": (lambda: f.dicom(TWELVE, stored=12), _expected_twelve_bit(), None, True),
    "rle-rgb": (lambda: f.dicom(COLOUR, syntax=RLELossless), COLOUR, None, True),
    "multi-frame-frame-2": (lambda: f.dicom([GREY[::-1], GREY, 255 - GREY]), GREY, 2, True),
    "multi-frame-representative": (lambda: f.dicom([GREY[::-1], 255 - GREY, GREY], representative_frame=3), GREY,
                                   None, True),
    "ultrasound-region-crop": (lambda: f.dicom(np.pad(GREY, ((6, 10), (30, 4)))[:, :],
                                               regions=[(30, 6, 30 + 95, 6 + 79)]), GREY, None, True),
    "jpeg-baseline-ybr-full-422": (lambda: f.dicom(COLOUR, syntax=JPEGBaseline8Bit), COLOUR, None, False),
    "jpeg-baseline-monochrome2": (lambda: f.dicom(GREY, syntax=JPEGBaseline8Bit), GREY, None, False),
    "jpeg-baseline-multi-frame": (lambda: f.dicom([255 - GREY, COLOUR.mean(-1).astype(np.uint8), GREY],
                                                  syntax=JPEGBaseline8Bit), GREY, 3, False),
}


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_decodes_to_the_pixels_of_its_png(name):
    build, expected, frame, lossless = KINDS[name]
    img = decode_rgb(build(), frame=frame)
    want = _pixels(decode_rgb(f.png(expected)))
    assert img.size == (expected.shape[1], expected.shape[0])
    diff = np.abs(_pixels(img) - want)
    if lossless:
        assert diff.max() == 0
        # The model input too: DICOM pixels enter the one preprocessing (same array as the PNG's).
        assert np.array_equal(resize_for_model(img, 64), preprocess(f.png(expected), 64))
    else:  # JPEG at quality 95 with 4:2:2 chroma: close, not equal
        assert diff.mean() < 6.0, diff.mean()


def test_native_ybr_full_becomes_the_rgb_it_encodes():
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(COLOUR, "RGB", "YBR_FULL")
    img = decode_rgb(f.dicom(ybr, photometric="YBR_FULL"))
    assert np.abs(_pixels(img) - COLOUR.astype(np.int16)).max() <= 2  # two 8-bit colour conversions: rounding


def test_the_frame_and_region_come_back_with_the_image():
    data = f.dicom([GREY, GREY, GREY], regions=[(4, 2, 90, 70)])
    info = decode_rgb(data, frame=2).info["dicom"]
    assert (info.frame, info.frames, info.region) == (2, 3, (4, 2, 87, 69))
    assert decode_rgb(data).info["dicom"].frame == 1  # no Representative Frame Number: the first


def test_voi_window_functions_follow_the_standard():
    x = np.array([0.0, 49.5, 50.0, 100.0, 149.5, 150.0])
    # LINEAR, c=100, w=101: 0 at or below c - 0.5 - (w-1)/2 = 49.5, 1 above 149.5, ((x - 99.5) / 100 + 0.5) between
    assert dicom.voi_window(x, 100, 101).tolist() == pytest.approx([0, 0, 0.005, 0.505, 1, 1])
    assert dicom.voi_window(x, 100, 100, "LINEAR_EXACT").tolist() == pytest.approx([0, 0, 0, 0.5, 0.995, 1])
    assert dicom.voi_window(np.array([100.0]), 100, 50, "SIGMOID")[0] == pytest.approx(0.5)


# -- through the handler -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(tiny_model_dir):
    return create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))


def call(service, event):
    response = service(event, LocalContext())
    return response["statusCode"], json.loads(response["body"])


def with_query(event: dict, **query) -> dict:
    event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
    event["multiValueQueryStringParameters"] = {k: [str(v)] for k, v in query.items()}
    return event


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_answers_like_its_png_through_the_handler(service, name):
    build, expected, frame, lossless = KINDS[name]
    event = predict_raw(build(), DCM)
    if frame is not None:
        with_query(event, frame=frame)
    status, body = call(service, event)
    assert status == 200, body
    _, png_body = call(service, predict_raw(f.png(expected), "image/png"))
    tolerance = 0.01 if lossless else 0.05
    assert body["probabilities"] == pytest.approx(png_body["probabilities"], abs=tolerance)
    if lossless:
        assert body["label"] == png_body["label"]
    assert body["disclaimer"].startswith("Research use only")
    assert body["dicom"]["frame"] == (frame or (3 if "representative" in name else 1))
    assert "sop_instance_uid" not in body["dicom"]


def test_json_and_multipart_carry_dicom_too(service):
    data = f.dicom(GREY)
    _, want = call(service, predict_raw(data, DCM))
    for event in (predict_json(data), predict_json(data, prefix="data:application/dicom;base64,")):
        status, body = call(service, event)
        assert status == 200 and body["probabilities"] == want["probabilities"], body
    payload, ctype = multipart_body([("image", "scan.dcm", data)])  # curl -F image=@scan.dcm: octet-stream
    status, body = call(service, rest_event(body=payload, content_type=ctype))
    assert status == 200 and body["probabilities"] == want["probabilities"], body
    typed = payload.replace(b"Content-Type: application/octet-stream", b"Content-Type: application/dicom")
    status, body = call(service, rest_event(body=typed, content_type=ctype))
    assert status == 200 and body["dicom"]["frames"] == 1, body


def test_the_instance_uid_is_echoed_only_when_asked_for(service):
    data = f.dicom(GREY)
    uid = str(__import__("pydicom").dcmread(io.BytesIO(data)).SOPInstanceUID)
    status, body = call(service, predict_raw(data, DCM))
    assert status == 200 and uid not in json.dumps(body)
    status, body = call(service, with_query(predict_raw(data, DCM), include="sop_instance_uid"))
    assert status == 200 and body["dicom"]["sop_instance_uid"] == uid


def _set(**values):
    def edit(ds):
        for key, value in values.items():
            setattr(ds, key, value)
    return edit


def _truncated_pixels(ds):
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]


def _jpeg2000(ds):
    from pydicom.encaps import encapsulate

    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(200)])  # a J2K codestream's first markers


def _private_syntax(ds):
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8"


def _huge(ds):
    ds.Rows, ds.Columns = 60_000, 60_000


BAD = {
    # (body, content type, query) -> (status, code)
    "text-declared-dicom": (lambda: b"hello, not a dicom file", DCM, {}, 400, "not_dicom"),
    "png-declared-dicom": (lambda: f.png(GREY), DCM, {}, 415, "media_type_mismatch"),
    "dicom-declared-png": (lambda: f.dicom(GREY), "image/png", {}, 415, "media_type_mismatch"),
    "no-preamble": (lambda: f.dicom(GREY)[132:], DCM, {}, 400, "not_dicom"),
    "ct-modality": (lambda: f.dicom(GREY, modality="CT"), DCM, {}, 422, "unsupported_modality"),
    "no-modality": (lambda: f.dicom(GREY, extra=lambda ds: delattr(ds, "Modality")), DCM, {}, 422,
                    "unsupported_modality"),
    "jpeg-2000": (lambda: f.dicom(GREY, extra=_jpeg2000), DCM, {}, 415, "unsupported_transfer_syntax"),
    "unknown-syntax": (lambda: f.dicom(GREY, extra=_private_syntax), DCM, {}, 415, "unsupported_transfer_syntax"),
    "truncated-file": (lambda: f.dicom(GREY)[:400], DCM, {}, 400, "corrupt_image"),
    "truncated-pixel-data": (lambda: f.dicom(GREY, extra=_truncated_pixels), DCM, {}, 400, "corrupt_image"),
    "cut-in-pixel-data": (lambda: f.dicom(GREY)[:-3000], DCM, {}, 400, "corrupt_image"),
    "lying-rows": (lambda: f.dicom(GREY, extra=_set(Rows=200)), DCM, {}, 400, "corrupt_image"),
    "lying-frames": (lambda: f.dicom(GREY, extra=_set(NumberOfFrames=40)), DCM, {}, 400, "corrupt_image"),
    "lying-bits": (lambda: f.dicom(GREY, extra=_set(BitsAllocated=16, BitsStored=16)), DCM, {}, 400,
                   "corrupt_image"),
    "jpeg-baseline-declared-16-bit": (lambda: f.dicom(GREY, syntax=JPEGBaseline8Bit, extra=_set(BitsAllocated=16,
                                                                                            BitsStored=12)),
                                      DCM, {}, 400, "corrupt_image"),
    "lying-jpeg-size": (lambda: f.dicom(GREY, syntax=JPEGBaseline8Bit, extra=_set(Columns=120)), DCM, {}, 400,
                        "corrupt_image"),
    "lying-samples": (lambda: f.dicom(GREY, extra=_set(SamplesPerPixel=3)), DCM, {}, 400, "corrupt_image"),
    "huge-declared-size": (lambda: f.dicom(GREY, extra=_huge), DCM, {}, 422, "bad_image_dimensions"),
    "too-many-frames": (lambda: f.dicom(GREY, extra=_set(NumberOfFrames=dicom.MAX_FRAMES + 1)), DCM, {}, 422,
                        "bad_image_dimensions"),
    "tiny-frame": (lambda: f.dicom(GREY[:20, :20]), DCM, {}, 422, "image_too_small"),
    "32-bit": (lambda: f.dicom(GREY, extra=_set(BitsAllocated=32, BitsStored=32)), DCM, {}, 400,
               "unsupported_image"),
    "palette-colour": (lambda: f.dicom(GREY, extra=_set(PhotometricInterpretation="PALETTE COLOR")), DCM, {}, 400,
                       "unsupported_image"),
    "no-pixel-data": (lambda: f.dicom(GREY, extra=lambda ds: delattr(ds, "PixelData")), DCM, {}, 400,
                      "unsupported_image"),
    "zero-window-width": (lambda: f.dicom(GREY, window=(128, 0)), DCM, {}, 400, "corrupt_image"),
    "frame-beyond-the-file": (lambda: f.dicom([GREY, GREY]), DCM, {"frame": 3}, 422, "frame_out_of_range"),
    "frame-2-of-a-png": (lambda: f.png(GREY), "image/png", {"frame": 2}, 422, "frame_out_of_range"),
    "frame-zero": (lambda: f.dicom(GREY), DCM, {"frame": 0}, 400, "invalid_parameter"),
    "frame-not-a-number": (lambda: f.dicom(GREY), DCM, {"frame": "last"}, 400, "invalid_parameter"),
    "unknown-include": (lambda: f.dicom(GREY), DCM, {"include": "patient_name"}, 400, "invalid_parameter"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_every_bad_file_gets_a_clear_4xx(service, name):
    build, ctype, query, want_status, want_code = BAD[name]
    event = predict_raw(build(), ctype)
    if query:
        with_query(event, **query)
    status, body = call(service, event)
    assert (status, body.get("error", {}).get("code")) == (want_status, want_code), body
    assert body["error"]["message"] and body["disclaimer"].startswith("Research use only")


def test_the_first_frame_of_a_png_is_its_only_frame(service):
    status, body = call(service, with_query(predict_raw(f.png(GREY), "image/png"), frame=1))
    assert status == 200 and "dicom" not in body


# -- no patient data leaves ------------------------------------------------------------------------

#: A value planted where the modality goes: free text from the file must never be echoed either.
PLANTED = "QXZJ7731"


def test_patient_name_and_id_appear_nowhere(tiny_model_dir, capsys):
    svc = create_service(Settings(model_dir=tiny_model_dir, service_name=f"dicom-privacy-{uuid.uuid4().hex[:8]}",
                                  log_level="DEBUG", metrics_enabled=True, log_predictions=True))
    files = [f.dicom(GREY), f.dicom([GREY, GREY], syntax=JPEGBaseline8Bit), f.dicom(GREY, modality="CT"),
             f.dicom(GREY, modality=PLANTED), f.dicom(GREY, extra=_truncated_pixels), f.dicom(GREY)[:600],
             f.dicom(GREY, extra=_jpeg2000)]
    bodies = []
    for data in files:
        for event in (predict_raw(data, DCM), with_query(predict_raw(data, DCM), frame=2)):
            response = svc(event, LocalContext())
            assert response["statusCode"] < 500
            bodies.append(response["body"])
    out = capsys.readouterr()
    everything = out.out + out.err + "".join(bodies)
    assert '"message": "request"' in out.out or '"message":"request"' in out.out  # the logs were captured
    assert any('"_aws"' in line for line in out.out.splitlines())  # and the metrics
    for secret in (f.PATIENT_NAME, f.PATIENT_ID, "Zyxwvut", "Qorbl", "5e81d0c4b2", PLANTED, "19700101",
                   "Hospital of"):
        assert secret.lower() not in everything.lower(), secret
    assert not re.search(r"1\.2\.826\.0\.1\.3680043\.8\.498\.\d+", everything)  # no UID either (not asked for)


# -- the bundled model on real BUSI frames ----------------------------------------------------------

def _bundled_engine():
    from classifier.engine import Engine
    from classifier.errors import ModelLoadError

    try:
        return Engine(REPO / "lambda_src" / "model")
    except ModelLoadError as exc:
        pytest.skip(f"the bundled model does not load here: {exc}")


def _busi_frames() -> list[tuple[str, np.ndarray]]:
    out = [(p.stem, np.asarray(Image.open(p).convert("L"))) for p in sorted((REPO / "examples").glob("*.png"))]
    shared = REPO.parent / "shared" / "data" / "busi"
    extra = sorted(shared.glob("*/*).png"))[:1] if shared.is_dir() else []
    out += [(p.stem, np.asarray(Image.open(p).convert("L"))) for p in extra]
    return out


@pytest.mark.parametrize("kind", ["monochrome2", "monochrome1", "rgb", "jpeg-ybr-full-422", "16bit-window",
                                  "multi-frame"])
def test_the_bundled_model_answers_a_busi_frame_as_dicom_like_its_png(kind):
    engine = _bundled_engine()
    for name, grey in _busi_frames():
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        data, frame, tol = {
            "monochrome2": lambda: (f.dicom(grey), None, 0.01),
            "monochrome1": lambda: (f.dicom(255 - grey, photometric="MONOCHROME1"), None, 0.01),
            "rgb": lambda: (f.dicom(rgb), None, 0.01),
            "jpeg-ybr-full-422": lambda: (f.dicom(rgb, syntax=JPEGBaseline8Bit), None, 0.05),
            "16bit-window": lambda: (f.dicom(grey.astype(np.uint16) * 32, stored=13, slope=1, intercept=-1000,
                                             window=WINDOW_13), None, 0.01),
            "multi-frame": lambda: (f.dicom([255 - grey, grey]), 2, 0.01),
        }[kind]()
        png = engine.analyse(f.png(grey)).probabilities
        got = engine.analyse(data, frame=frame)
        assert got.probabilities == pytest.approx(png, abs=tol), name
        assert engine.card.decide(got.probabilities)[0] == engine.card.decide(png)[0] or tol > 0.01, name


def test_supported_transfer_syntaxes_table_in_the_docs_is_the_code():
    text = (REPO / "docs" / "api.md").read_text()
    rows = re.findall(r"^\| `(1\.2\.840\.10008[0-9.]+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    assert {uid: name.strip() for uid, name in rows} == {uid: name for uid, (name, _) in
                                                          dicom.TRANSFER_SYNTAXES.items()}



# -- the local API over real HTTP (curl), the client CLI, the batch scorer ---------------------------

@pytest.fixture(scope="module")
def server(service):
    from classifier.local_api import start_server, stop_server

    srv = start_server(service, port=0, max_body_bytes=service.settings.max_body_bytes)
    yield srv
    stop_server(srv)


def _curl(*args: str) -> tuple[int, dict]:
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        pytest.skip("needs the curl command")
    proc = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True,
                          timeout=60, check=True)
    raw, _, code = proc.stdout.decode().rpartition("\n")
    return int(code), json.loads(raw)


def test_curl_sends_dicom_raw_and_as_a_form_part(server, service, tmp_path):
    path = tmp_path / "cine.dcm"
    path.write_bytes(f.dicom([255 - GREY, GREY]))
    _, want = call(service, with_query(predict_raw(path.read_bytes(), DCM), frame=2))
    status, body = _curl("-X", "POST", f"{server.url}/predict?frame=2", "-H", f"Content-Type: {DCM}",
                         "--data-binary", f"@{path}")
    assert status == 200 and body["probabilities"] == want["probabilities"] and body["dicom"]["frame"] == 2
    status, body = _curl("-X", "POST", f"{server.url}/predict?frame=2", "-F", f"image=@{path}")
    assert status == 200 and body["probabilities"] == want["probabilities"]
    status, body = _curl("-X", "POST", f"{server.url}/predict?frame=9", "-F", f"image=@{path}")
    assert (status, body["error"]["code"]) == (422, "frame_out_of_range")


def test_the_client_sends_dicom_as_application_dicom(server, service, tmp_path, capsys):
    from classifier import client

    path = tmp_path / "scan.dcm"
    path.write_bytes(f.dicom([GREY, 255 - GREY]))
    assert client.encode_request(path.read_bytes()) == (path.read_bytes(), DCM)
    assert client.main(["predict", str(path), "--frame", "2", "--json", "--endpoint", server.url]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    _, want = call(service, with_query(predict_raw(path.read_bytes(), DCM), frame=2))
    assert row["ok"] and row["probabilities"] == want["probabilities"] and row["dicom"]["frame"] == 2


def test_batch_scores_dicom_files_by_suffix_and_by_content(service, tiny_model_dir, tmp_path):
    from classifier import batch

    root = tmp_path / "export"
    (root / "study").mkdir(parents=True)
    (root / "study" / "a.dcm").write_bytes(f.dicom(GREY))
    (root / "study" / "1.2.840.113619.2.55.3.320").write_bytes(f.dicom(COLOUR))  # a PACS export's UID name
    (root / "study" / "ct.dcm").write_bytes(f.dicom(GREY, modality="CT"))
    (root / "study" / "notes.txt").write_text("not an image")
    out = tmp_path / "rows.jsonl"
    batch.run(root, out, model_dir=tiny_model_dir, processes=1, progress=False)
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"a.dcm", "1.2.840.113619.2.55.3.320", "ct.dcm"}
    for name in ("a.dcm", "1.2.840.113619.2.55.3.320"):
        _, want = call(service, predict_raw((root / "study" / name).read_bytes(), DCM))
        assert rows[name]["probabilities"] == want["probabilities"] and rows[name]["dicom"]["frame"] == 1
    assert rows["ct.dcm"]["error"]["code"] == "unsupported_modality"
    assert f.PATIENT_NAME not in out.read_text() and f.PATIENT_ID not in out.read_text()


# -- a DICOM SR result (Accept: application/dicom) ---------------------------------------------------

def _content(ds) -> dict[str, object]:
    """The SR's content items by concept meaning: TEXT -> text, NUM -> float, IMAGE -> the reference."""
    out: dict[str, object] = {}
    for item in ds.ContentSequence:
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "TEXT":
            out[meaning] = item.TextValue
        elif item.ValueType == "NUM":
            out[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
            assert item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "1"
        elif item.ValueType == "IMAGE":
            out[meaning] = item.ReferencedSOPSequence[0]
    return out


def test_accept_dicom_answers_an_sr_that_references_the_input_and_reads_back(tiny_model_dir, capsys):
    import pydicom

    svc = create_service(Settings(model_dir=tiny_model_dir, service_name=f"dicom-sr-{uuid.uuid4().hex[:8]}",
                                  log_level="DEBUG", metrics_enabled=True, log_predictions=True))
    data = f.dicom([255 - GREY, GREY])
    source = pydicom.dcmread(io.BytesIO(data))
    _, want = call(svc, with_query(predict_raw(data, DCM), frame=2))
    event = with_query(predict_raw(data, DCM, headers={"Accept": "application/dicom"}), frame=2)
    response = svc(event, LocalContext())
    assert response["statusCode"] == 200 and response["isBase64Encoded"]
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    headers.update({k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
    assert headers["content-type"] == "application/dicom"
    import base64

    sr = pydicom.dcmread(io.BytesIO(base64.b64decode(response["body"])))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.Modality == "SR"
    assert sr.SOPInstanceUID != source.SOPInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    # joins the input's study, for the PACS to file it there
    assert (sr.PatientName, sr.PatientID, sr.StudyInstanceUID) == (source.PatientName, source.PatientID,
                                                                   source.StudyInstanceUID)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    items = _content(sr)
    ref = items["Source of Measurement"]
    assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID, ref.ReferencedFrameNumber) == (
        source.SOPInstanceUID, source.SOPClassUID, 2)
    assert items["Label"] == want["label"] and items["Label rule"] == want["label_rule"]
    assert items["Comment"] == want["disclaimer"] and want["disclaimer"].startswith("Research use only")
    assert items["Algorithm Version"] == want["model"]["version"]
    for label, p in want["probabilities"].items():
        assert items[f"Probability of {label}"] == pytest.approx(p, abs=1e-9)
    if want.get("operating_point"):
        assert items["Operating point"] == want["operating_point"]
    logs = capsys.readouterr()
    assert f.PATIENT_NAME not in logs.out + logs.err and f.PATIENT_ID not in logs.out + logs.err


def test_accept_dicom_for_a_png_is_406(service):
    status, body = call(service, predict_raw(f.png(GREY), "image/png", headers={"Accept": "application/dicom"}))
    assert (status, body["error"]["code"]) == (406, "not_acceptable")
    status, body = call(service, predict_raw(f.png(GREY), "image/png", headers={"Accept": "application/json, */*"}))
    assert status == 200 and "probabilities" in body
