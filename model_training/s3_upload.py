"""`make upload`: copy site folders (images, masks, metadata CSVs) to s3://<bucket>/<prefix><site>/ for
`train --on sagemaker`, with boto3's transfer manager (multipart, retries), a byte progress bar, and resumable:
a file already there with the same size and checksum is skipped, so a rerun after an interruption uploads only
what is missing or changed.

Checksum: each object carries its SHA-256 in its metadata (x-amz-meta-sha256); an object uploaded by something
else counts as the same when its ETag is the file's MD5 (single-part, SSE-S3). Research use only; not a
medical device.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import TrainingError
from .sagemaker_job import DATA_PREFIX, OUTPUTS, aws_message

#: boto3's transfer manager: parts of 8 MB, and files above that in parallel parts.
PART_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Planned:
    path: Path
    key: str
    size: int
    sha256: str
    md5: str


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def site_files(folder: Path) -> list[Path]:
    """Every regular file under the site folder except hidden ones (the loader reads images, masks and CSVs)."""
    if not folder.is_dir():
        raise TrainingError(f"{folder}: not a folder (one site per folder, BUSI layout: <root>/<class>/*.png)")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise TrainingError(f"{folder}: no files to upload")
    return files


def plan(folders: list[Path], prefix: str) -> list[Planned]:
    names = [f.resolve().name for f in folders]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TrainingError(f"two site folders share the name {', '.join(dupes)}: the name is the site's S3 prefix")
    out = []
    for folder, name in zip(folders, names):
        for path in site_files(folder):
            sha, md5 = _digests(path)
            out.append(Planned(path, f"{prefix}{name}/{path.relative_to(folder).as_posix()}", path.stat().st_size,
                               sha, md5))
    return out


def _existing(s3, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return found


def is_same(s3, bucket: str, item: Planned, existing: tuple[int, str] | None) -> bool:
    if existing is None or existing[0] != item.size:
        return False
    if existing[1] == item.md5:
        return True
    meta = s3.head_object(Bucket=bucket, Key=item.key).get("Metadata", {})
    return meta.get("sha256") == item.sha256


def upload_file(s3, path: Path, bucket: str, key: str, *, sha256: str | None = None, callback=None) -> None:
    """One file through the transfer manager (multipart above PART_BYTES), its SHA-256 in the metadata."""
    from boto3.s3.transfer import TransferConfig

    sha = sha256 or _digests(path)[0]
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha}}, Callback=callback,
                   Config=TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES))


def sync(s3, folders: list[Path], bucket: str, *, prefix: str = DATA_PREFIX, workers: int = 8,
         progress: bool = True) -> dict[str, int]:
    """Upload what is missing or changed; returns counts (uploaded, skipped, bytes_uploaded)."""
    from tqdm import tqdm

    items = plan(folders, prefix)
    try:
        existing = {}
        for name in sorted({f.resolve().name for f in folders}):
            existing.update(_existing(s3, bucket, f"{prefix}{name}/"))
    except Exception as exc:  # noqa: BLE001 - NoSuchBucket, AccessDenied, no credentials
        raise TrainingError(f"cannot list s3://{bucket}/{prefix}: {aws_message(exc)}") from exc
    with ThreadPoolExecutor(max_workers=workers) as pool:
        same = list(pool.map(lambda i: is_same(s3, bucket, i, existing.get(i.key)), items))
    todo = [i for i, s in zip(items, same) if not s]
    total = sum(i.size for i in todo)
    lock = threading.Lock()
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"upload to s3://{bucket}/{prefix}",
              disable=not progress) as bar:
        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def put(item: Planned) -> None:
            try:
                upload_file(s3, item.path, bucket, item.key, sha256=item.sha256, callback=advance)
            except Exception as exc:  # noqa: BLE001
                raise TrainingError(f"{item.path} -> s3://{bucket}/{item.key}: {aws_message(exc)}") from exc

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(put, todo))
    return {"uploaded": len(todo), "skipped": len(items) - len(todo), "bytes_uploaded": total}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_training.s3_upload",
        description="Copy site folders (BUSI layout: images, masks, metadata CSV) to s3://BUCKET/PREFIX<site>/ for "
                    "`train --on sagemaker`. Resumable: files already there with the same size and checksum are "
                    "skipped. Prints the --data arguments to train with. Research use only; not a medical device.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", nargs="+", type=Path, help="site folders; each folder's name becomes its S3 prefix")
    p.add_argument("--bucket", default=None, help="target bucket (default: the stack's TrainingBucketName output)")
    p.add_argument("--stack", default="BusiClassifier", help="the stack to read the bucket from when --bucket is not given")
    p.add_argument("--prefix", default=DATA_PREFIX, help="key prefix in front of each site's name (the training "
                                                         "role reads data under data/)")
    p.add_argument("--workers", type=int, default=8, help="files uploaded at once")
    p.add_argument("--region", default=None)
    p.add_argument("--profile", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from classifier.stack_lookup import StackLookupError, lookup, session

    try:
        if args.workers < 1:
            raise TrainingError(f"--workers must be >= 1, got {args.workers}")
        if args.prefix and not args.prefix.endswith("/"):
            raise TrainingError(f"--prefix must end in '/', got {args.prefix!r}")
        sess = session(args.profile, args.region)
        bucket = args.bucket or lookup(args.stack, boto_session=sess, with_key=False).require(
            OUTPUTS["bucket"], "deploy it with `make deploy CDK_ARGS=\"-c training=true\"` or give --bucket")
        counts = sync(sess.client("s3"), list(args.data), bucket, prefix=args.prefix, workers=args.workers,
                      progress=not args.no_progress)
    except (TrainingError, StackLookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"uploaded {counts['uploaded']} file(s) ({counts['bytes_uploaded'] / 1e6:.1f} MB), {counts['skipped']} "
          "already there")
    print("train on them: make train-cloud DATA=\"" + " ".join(
        f"s3://{bucket}/{args.prefix}{d.resolve().name}/" for d in args.data) + "\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
