"""Test-wide settings: every notebook runs at the smoke preset, MNIST from the offline copy,
results into a temporary folder (so tests never overwrite a book build's results)."""
import os
import tempfile
import time
from pathlib import Path

os.environ["XFER_PRESET"] = "smoke"
os.environ["TQDM_DISABLE"] = "1"  # progress bars (tqdm) are for people running a chapter by hand
os.environ.setdefault("XFER_RESULTS_DIR", tempfile.mkdtemp(prefix="xfer-results-"))
os.environ.setdefault("XFER_TEST_START", str(time.time()))
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "XFER_DATA_DIR" not in os.environ and (_shared / "MNIST" / "raw").is_dir():
    os.environ["XFER_DATA_DIR"] = str(_shared)
os.environ.setdefault("MPLBACKEND", "Agg")
