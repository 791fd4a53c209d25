"""Delete what the Lambda never loads from the `pip install --target` tree of lambda_src/requirements.txt.

The single source of truth for what the image leaves out: the Dockerfile runs it in the same
RUN layer as the install (so the deleted bytes never land in a layer), `make bench` runs the
same command to measure what ships, and tests/serving prove the pruned tree still serves.

    python3 prune_site.py TARGET [--dry-run] [--report FILE] [--machine aarch64]

Exit status 0: pruned. 1: nothing deleted, because a `strict` rule matched nothing (a pinned
package moved things: review the rule; a second run on a pruned tree fails this way too) or a
file the handler loads would go (a rule is too broad). 2: bad arguments.
Standard library only: it runs with the image's Python 3.12, before any code is copied in.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Rule:
    pattern: str  # glob relative to TARGET (pathlib syntax, `**` = any depth)
    reason: str
    #: True: matching nothing is an error. The requirements are pinned, so a miss means the
    #: package layout changed and the rule (and its reason) must be re-checked, not ignored.
    #: False only where a miss is harmless and expected across versions.
    strict: bool = True
    #: Machines (platform.machine()) whose wheels ship these files; empty: all. Elsewhere the
    #: rule may match nothing (the aarch64 LiteRT wheel has no NPU tools).
    shipped_on: tuple[str, ...] = ()

    def strict_on(self, machine: str) -> bool:
        return self.strict and (not self.shipped_on or machine in self.shipped_on)


# Checked by loading the pinned versions with the handler and reading /proc/self/maps and
# sys.modules after a prediction: none of these is loaded (tests/serving/test_clean_venv.py
# runs the handler on the pruned tree).
RULES: tuple[Rule, ...] = (
    Rule(pattern="ai_edge_litert/libLiteRtWebGpuAccelerator.so",
         reason="LiteRT's WebGPU accelerator: Lambda has no GPU; the CPU Interpreter never dlopens it"),
    Rule(pattern="ai_edge_litert/tools/apply_plugin_main", shipped_on=("x86_64",),
         reason="ahead-of-time NPU compiler CLI (a binary), only run by ai_edge_litert.aot"),
    Rule(pattern="ai_edge_litert/vendors", shipped_on=("x86_64",),
         reason="NPU compiler/dispatch plugins (Qualcomm, MediaTek, ...); the Interpreter never looks there"),
    Rule(pattern="ai_edge_litert/aot",
         reason="ahead-of-time NPU compilation in Python; needs the two entries above, so remove it with them"),
    Rule(pattern="numpy/**/tests", reason="numpy's own test suite (with its .pyc); never imported at run time"),
    Rule(pattern="numpy/f2py", reason="Fortran-to-Python build tool; numpy imports it only on `np.f2py`"),
    Rule(pattern="numpy/_core/include", reason="C headers for compiling numpy extensions"),
    Rule(pattern="numpy/_core/lib", reason="static libnpymath.a + pkg-config file for compiling extensions"),
    Rule(pattern="numpy/random/lib", reason="static libnpyrandom.a for compiling extensions"),
    Rule(pattern="aws_lambda_powertools/event_handler/openapi/swagger_ui/swagger-ui*.min.*",
         reason="Swagger UI assets, served only after enable_swagger(), which the handler never calls"),
    Rule(pattern="pydicom/data/test_files",
         reason="pydicom's own test DICOM files, read only by pydicom.data.get_testdata_file"),
    Rule(pattern="pydicom/sr",
         reason="SR code dictionaries (CID/SNOMED/DCM concepts, 6.7 MB); loaded only by `import pydicom.sr`, which "
                "classifier never does"),
    Rule(pattern="bin", strict=False,
         reason="console scripts (f2py, tqdm, ...) with a build-time shebang; nothing runs them "
         "(not strict: pip writes bin/ only when a package declares a script)"),
)

#: Globs that must still match after pruning: the files the handler loads for a prediction
#: (import, model load, PNG/JPEG/DICOM decode, invoke). A rule that deletes one fails the build.
REQUIRED: tuple[str, ...] = (
    "ai_edge_litert/interpreter.py",
    "ai_edge_litert/_pywrap_litert_interpreter_wrapper.so",
    "ai_edge_litert/libpywrap_litert_common.so",
    "ai_edge_litert/libLiteRt.so",
    "numpy/__init__.py",
    "numpy/_core/_multiarray_umath.*.so",
    "numpy/linalg/_umath_linalg.*.so",
    "numpy.libs/libscipy_openblas*.so",
    "numpy/testing/__init__.py",  # public numpy API other packages import; not a test suite
    "PIL/_imaging.*.so",
    "PIL/PngImagePlugin.py",
    "PIL/JpegImagePlugin.py",
    "PIL/BmpImagePlugin.py",
    "aws_lambda_powertools/event_handler/api_gateway.py",
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/__init__.py",
    "pydicom/__init__.py",  # DICOM bodies (classifier.dicom): parse, native and RLE pixel data
    "pydicom/filereader.py",
    "pydicom/encaps.py",
    "pydicom/pixels/decoders/rle.py",
    "pydicom/pixels/processing.py",
    "pydantic/main.py",  # the response contract (classifier.response_model)
    "pydantic_core/_pydantic_core.*.so",
)


class PruneError(RuntimeError):
    pass


def _files(path: Path) -> set[Path]:
    if path.is_symlink() or path.is_file():
        return {path}
    return {p for p in path.rglob("*") if p.is_symlink() or p.is_file()}


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in _files(path))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _check_required(target: Path, required: tuple[str, ...], doomed: list[Path]) -> None:
    """Each required glob must keep a match that no planned deletion covers."""
    gone = [g for g in required
            if not any(not any(m == d or d in m.parents for d in doomed) for m in target.glob(g))]
    if gone and doomed:
        raise PruneError("required files would be missing after pruning (a rule is too broad, or the "
                         "install is incomplete); nothing was deleted: " + ", ".join(gone))
    if gone:
        raise PruneError("required files are missing: " + ", ".join(gone))


def plan(target: Path, rules: tuple[Rule, ...] = RULES, *, machine: str = platform.machine()
         ) -> list[tuple[Rule, list[Path]]]:
    """Every rule with the paths it matches (outermost only: a match inside another is dropped)."""
    target = Path(target)
    out, missing = [], []
    for rule in rules:
        if Path(rule.pattern).is_absolute() or ".." in Path(rule.pattern).parts:
            raise PruneError(f"rule {rule.pattern!r} must stay inside the target folder")
        matches = sorted(target.glob(rule.pattern))
        outer = [p for p in matches if not any(q != p and q in p.parents for q in matches)]
        if not outer and rule.strict_on(machine):
            missing.append(rule.pattern)
        out.append((rule, outer))
    if missing:
        raise PruneError(f"these strict rules match nothing in {target} ({machine}): did a pinned package "
                         "change its layout? Re-check the rule and its reason: " + ", ".join(missing))
    return out


def prune(target: Path, *, rules: tuple[Rule, ...] = RULES, required: tuple[str, ...] = REQUIRED,
          machine: str = platform.machine(), dry_run: bool = False, log=print) -> dict:
    """Delete every rule's matches under `target`; returns bytes before/after and per-rule savings.

    Checks every rule and the required files before deleting anything, and the required files again after.
    """
    target = Path(target)
    if not target.is_dir():
        raise PruneError(f"{target} is not a folder (expected a `pip install --target` tree)")
    planned = plan(target, rules, machine=machine)
    doomed = [p for _, paths in planned for p in paths]
    # Checked before deleting anything (so a failed run leaves the tree whole) and again after.
    _check_required(target, required, doomed)
    before = _size(target)
    rows, claimed = [], set()
    for rule, paths in planned:
        # Bytes of files no earlier rule claimed: rules may overlap (numpy/f2py holds a tests/).
        files = set().union(*(_files(p) for p in paths)) - claimed
        claimed |= files
        saved = sum(f.lstat().st_size for f in files)
        if not dry_run:
            for p in paths:
                if p.exists() or p.is_symlink():
                    _remove(p)
        rows.append({"pattern": rule.pattern, "paths": len(paths), "bytes": saved, "reason": rule.reason})
        log(f"{'would remove' if dry_run else 'removed'} {saved / 1e6:7.2f} MB  {rule.pattern}"
            f"  ({len(paths)} path{'s' * (len(paths) != 1)}): {rule.reason}")
    if not dry_run:
        _check_required(target, required, [])
    saved = sum(r["bytes"] for r in rows)
    after = before - saved if dry_run else _size(target)
    log(f"{'would save' if dry_run else 'saved'} {saved / 1e6:.1f} MB: {before / 1e6:.1f} MB -> "
        f"{after / 1e6:.1f} MB in {target}")
    return {"before_bytes": before, "after_bytes": after, "saved_bytes": saved, "dry_run": dry_run, "rules": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prune_site.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", type=Path,
                   help="the folder `pip install --target` wrote (in the image: $LAMBDA_TASK_ROOT)")
    p.add_argument("--dry-run", action="store_true", help="list what would go and check the rules; delete nothing")
    p.add_argument("--report", type=Path, help="also write the result as JSON to this file")
    p.add_argument("--machine", default=platform.machine(),
                   help="the architecture the tree was installed for, as platform.machine() names it "
                   "(default: this one, %(default)s; the image build runs on its target architecture)")
    args = p.parse_args(argv)
    try:
        result = prune(args.target, machine=args.machine, dry_run=args.dry_run)
    except PruneError as exc:
        print(f"prune_site: error: {exc}", file=sys.stderr)
        return 1
    if args.report:
        args.report.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
