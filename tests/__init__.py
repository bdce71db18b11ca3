"""`python -m unittest tests.test_train` imports this package first: put the helpers beside the tests on the path,
as `python -m unittest discover tests` does."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
