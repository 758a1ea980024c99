"""Every Python example in the docs and in the README runs as a test (Sybil), so examples cannot rot.

The code blocks of one page share a namespace, in order, as a reader runs them.
"""

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser

pytest_collect_file = Sybil(parsers=[PythonCodeBlockParser()], patterns=["*.md"]).pytest()
