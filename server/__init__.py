"""The REST API: FastAPI over the same store and engine as the CLI (``evolve serve``)."""

from evolve.server.app import create_app
from evolve.server.settings import ServerSettings, load_settings

__all__ = ["ServerSettings", "create_app", "load_settings"]
