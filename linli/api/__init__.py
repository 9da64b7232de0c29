"""The intake API (Open311 GeoReport v2) served by `linli api`."""

from linli.api.app import create_app

__all__ = ["create_app"]
