"""The batch Lambda entry point in-process against moto's S3: rows as the API answers, missing keys, non-images,
huge objects, and S3 throttling retried (a stubbed client: moto does not throttle)."""

from __future__ import annotations


import boto3
import pytest
from botocore.exceptions import ClientError

moto = pytest.importorskip("moto")

from classifier import batch_handler  # noqa: E402
from classifier.batch import prediction  # noqa: E402
from classifier.engine import Engine  # noqa: E402
from tests.batch.conftest import jpeg, png  # noqa: E402
from tests.model_factory import colour_photo_like, ultrasound_like  # noqa: E402

BUCKET = "busi-batch-input-test"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


@pytest.fixture(scope="module")
def engine(lesion_model):
    return Engine(lesion_model)


def _items(client, prefix="input/"):
    """What the ListObjectsV2 item reader hands the map: Key, Size, ..."""
    return [{"Key": o["Key"], "Size": o["Size"], "Etag": o["ETag"]}
            for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_a_batch_of_keys_becomes_rows(s3, engine):
    good = {"input/s1/a.png": png(ultrasound_like(1)), "input/s1/b.jpg": jpeg(ultrasound_like(2))}
    for key, data in good.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    s3.put_object(Bucket=BUCKET, Key="input/s1/readme.txt", Body=b"not an image")
    s3.put_object(Bucket=BUCKET, Key="input/s1/empty.png", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="input/s1/", Body=b"")  # a console "folder"
    items = _items(s3) + [{"Key": "input/s1/deleted.png", "Size": 10}]  # listed, then deleted
    rows = batch_handler.handle({"Items": items, "BatchInput": {"bucket": BUCKET}}, client=s3, scorer=engine,
                                environ={})
    by_key = {r["path"].split(f"s3://{BUCKET}/", 1)[1]: r for r in rows}
    assert set(by_key) == set(good) | {"input/s1/readme.txt", "input/s1/empty.png", "input/s1/deleted.png"}
    for key, data in good.items():
        expected = prediction(engine, data)
        row = by_key[key]
        assert row["error"] is None
        for field in ("label", "label_rule", "probabilities", "box", "peak", "model", "disclaimer"):
            assert row[field] == expected[field], (key, field)
    assert by_key["input/s1/readme.txt"]["error"]["code"] == "not_an_image"
    assert by_key["input/s1/empty.png"]["error"]["code"] == "not_an_image"
    assert by_key["input/s1/deleted.png"]["error"]["code"] == "missing_object"
    assert all(r["disclaimer"].startswith("Research use only") for r in rows)


def test_huge_objects_are_not_read(s3, engine):
    s3.put_object(Bucket=BUCKET, Key="input/big.png", Body=png(ultrasound_like(3)) + b"\0" * 5000)
    items = _items(s3)
    env = {batch_handler.ENV_MAX_OBJECT_BYTES: "4096"}
    rows = batch_handler.handle({"Items": items, "BatchInput": {"bucket": BUCKET}}, client=s3, scorer=engine,
                                environ=env)
    assert rows[0]["error"]["code"] == "object_too_large"
    # The listing's Size may be stale or absent: the ranged GET still refuses it without reading it all.
    rows = batch_handler.handle({"Items": [{"Key": "input/big.png"}], "BatchInput": {"bucket": BUCKET}},
                                client=s3, scorer=engine, environ=env)
    assert rows[0]["error"]["code"] == "object_too_large"


class Throttling:
    """An S3 client that answers SlowDown ``fails`` times, then delegates to the real (moto) client."""

    def __init__(self, real, fails: int):
        self.real, self.fails, self.calls = real, fails, 0

    def get_object(self, **kwargs):
        self.calls += 1
        if self.calls <= self.fails:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
        return self.real.get_object(**kwargs)


def test_throttling_is_retried_then_the_batch_fails_for_the_state_machine(s3, engine):
    s3.put_object(Bucket=BUCKET, Key="input/a.png", Body=png(ultrasound_like(4)))
    event = {"Items": [{"Key": "input/a.png"}], "BatchInput": {"bucket": BUCKET}}
    sleeps: list[float] = []
    client = Throttling(s3, fails=2)
    rows = batch_handler.handle(event, client=client, scorer=engine, environ={}, sleep=sleeps.append)
    assert rows[0]["error"] is None and client.calls == 3 and len(sleeps) == 2
    # Throttled on every try: BatchThrottled, the error name the state machine's Retry names.
    with pytest.raises(batch_handler.BatchThrottled):
        batch_handler.handle(event, client=Throttling(s3, fails=99), scorer=engine, environ={}, sleep=lambda s: None)


def test_not_a_batch_event_is_refused(engine):
    with pytest.raises(batch_handler.BatchInputError):
        batch_handler.handle({"httpMethod": "POST"}, client=object(), scorer=engine, environ={})
    with pytest.raises(batch_handler.BatchInputError):
        batch_handler.handle({"Items": []}, client=object(), scorer=engine, environ={})


def test_lambda_handler_reads_the_environment(s3, checked_model, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_MODEL_DIR", str(checked_model))
    monkeypatch.setenv(batch_handler.ENV_INPUT_BUCKET, BUCKET)
    monkeypatch.setattr(batch_handler, "_engine", None)
    monkeypatch.setattr(batch_handler, "_s3", None)
    s3.put_object(Bucket=BUCKET, Key="input/a.png", Body=png(ultrasound_like(5)))
    rows = batch_handler.lambda_handler({"Items": [{"Key": "input/a.png"}]}, None)
    assert rows[0]["error"] is None and rows[0]["path"] == f"s3://{BUCKET}/input/a.png"
    assert rows[0]["model"]["name"] == "tiny-lesion-model"
    # The engine the API serves: with the model's input check (a photo is refused as not_ultrasound).
    assert rows[0]["input_check"]["verdict"] in ("pass", "warn")
    s3.put_object(Bucket=BUCKET, Key="input/photo.png", Body=png(colour_photo_like(3)))
    (row,) = batch_handler.lambda_handler({"Items": [{"Key": "input/photo.png"}]}, None)
    assert row["error"]["code"] == "not_ultrasound"
