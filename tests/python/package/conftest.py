"""Makes tests/python's shared helpers (plain_formulation) importable."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
