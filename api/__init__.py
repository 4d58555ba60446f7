"""The HTTP face of the matcher: `create_app(settings)` builds the FastAPI application."""

from api.app import create_app

__all__ = ["create_app"]
