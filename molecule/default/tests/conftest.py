"""Fixtures for this scenario come from molecule/_shared/fixtures.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_shared"))

from fixtures import MANAGE, api_user, site, tokens  # noqa: E402,F401
