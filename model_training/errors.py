"""Errors a training user can cause (bad data folder, bad files, bad model dir), with clear messages."""

from __future__ import annotations


class TrainingError(Exception):
    """A problem with the user's inputs; the CLI prints the message and exits 2, no traceback."""


class DataFolderError(TrainingError):
    """The data folder is missing, empty or not in the `<root>/<class>/*.png` layout."""


class BadFilesError(TrainingError):
    """One or more image files could not be read; lists every one of them."""

    def __init__(self, bad: list[tuple[str, str]]):
        self.bad = list(bad)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.bad)
        super().__init__(
            f"{len(self.bad)} image file(s) could not be read:\n{lines}\n"
            "Fix or remove them, or pass --skip-bad (make: SKIP_BAD=1) to leave them out with a warning."
        )


class ParityError(TrainingError):
    """The exported .tflite disagrees with the Keras model beyond the tolerance."""
