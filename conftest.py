"""Test-wide settings: every notebook runs at the smoke preset, MNIST from the offline copy."""
import os
from pathlib import Path

os.environ.setdefault("XFER_PRESET", "smoke")
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "XFER_DATA_DIR" not in os.environ and (_shared / "MNIST" / "raw").is_dir():
    os.environ["XFER_DATA_DIR"] = str(_shared)
os.environ.setdefault("MPLBACKEND", "Agg")
