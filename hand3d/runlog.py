"""Send a job's logging, warnings, stdout and stderr to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(path: str) -> Iterator[logging.Logger]:
    """Within the block, everything the job prints or logs goes to `path`; an exception is logged, then raised."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("hand3d")
    with open(path, "w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.captureWarnings(True)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield logger
        except BaseException:
            logger.exception("job failed")
            raise
        finally:
            root.removeHandler(handler)
            logging.captureWarnings(False)
